"""How soon a thread that waits for the GIL gets it: hookline's processes hand it over fast.

Both processes of ``hookline serve`` do their I/O on threads that need the GIL for a moment
to hand a result back: SQLite runs on aiosqlite's thread in the server, and reqwest on
tokio's thread in the sender process. While the event loop runs Python code, such a thread
waits for Python's switch interval (5 ms by default) before it may even ask the loop thread
to let go, and a result often needs the GIL more than once (the convoy effect of CPython
issue 7946). With the loop busy, one reqwest request took p99 115-244 ms to come back at
5 ms against 8-24 ms at 0.5 ms; that was the reaction-time tail of the reqwest sender.
"""

from __future__ import annotations

import sys
from typing import Final

# Seconds a thread holds the GIL while another waits for it (Python's default: 0.005).
SWITCH_INTERVAL: Final = 0.0005


def hand_over_promptly() -> None:
    """Let a waiting I/O thread take the GIL after :data:`SWITCH_INTERVAL` of Python code."""
    sys.setswitchinterval(SWITCH_INTERVAL)
