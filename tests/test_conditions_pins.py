"""Tests that pin what conditions.py does for its users, found by mutation testing."""

from __future__ import annotations
