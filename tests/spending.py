"""CPU time spent on purpose: what the monitor counts as a cost (waiting is free)."""

import time


def spend(seconds: float) -> bool:
    """Spend ``seconds`` of this thread's CPU time; True (a draw that built a frame)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
    return True
