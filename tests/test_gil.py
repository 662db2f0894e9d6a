from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from hookline.gil import SWITCH_INTERVAL, hand_over_promptly


@pytest.fixture
def restore_switch_interval() -> Iterator[None]:
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("restore_switch_interval")
def test_hand_over_promptly_makes_a_waiting_thread_wait_a_tenth_of_pythons_default() -> None:
    sys.setswitchinterval(0.005)
    hand_over_promptly()
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    assert sys.getswitchinterval() <= 0.005 / 10
