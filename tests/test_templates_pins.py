"""Tests that pin what templates.py does for its users, found by mutation testing."""

from __future__ import annotations
