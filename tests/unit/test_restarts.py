"""Restarts of supervised processes and embedded servers back off while they keep dying."""

from __future__ import annotations

from qrloop.restarts import Restarter


class Flaky:
    """Something that dies whenever told to, and counts its starts."""

    def __init__(self) -> None:
        self.running = True
        self.starts: list[float] = []
        self.now = 0.0

    def down(self) -> str | None:
        return None if self.running else "died"

    def start(self) -> None:
        self.starts.append(self.now)
        self.running = True


def _run(restarter: Restarter, thing: Flaky, until: float) -> None:
    """Check every 0.1 s of (simulated) time, as the supervisor loop does."""
    while thing.now < until:
        restarter.check(thing.now)
        thing.now = round(thing.now + 0.1, 1)


def _kill_and_time_restart(restarter: Restarter, thing: Flaky) -> float:
    """Kill it now; the seconds until it is started again."""
    thing.running = False
    died, starts = thing.now, len(thing.starts)
    while len(thing.starts) == starts:
        _run(restarter, thing, until=thing.now + 0.1)
    return round(thing.starts[-1] - died)


def test_a_server_that_keeps_dying_is_restarted_ever_more_slowly() -> None:
    """Dying at once after each start, it is restarted after 1, 2, 4, 8 ... s, at most 30 s
    later, never in a tight loop."""
    thing = Flaky()
    restarter = Restarter("thing", thing.down, thing.start, first=1, most=30, stable=60)
    delays = [_kill_and_time_restart(restarter, thing) for _ in range(7)]
    assert delays == [1, 2, 4, 8, 16, 30, 30]


def test_after_running_a_while_a_death_is_restarted_quickly_again() -> None:
    """After a run longer than `stable`, the next death waits only the first delay again."""
    thing = Flaky()
    restarter = Restarter("thing", thing.down, thing.start, first=1, most=30, stable=60)
    assert [_kill_and_time_restart(restarter, thing) for _ in range(4)] == [1, 2, 4, 8]
    _run(restarter, thing, until=thing.now + 61)  # a stable run
    assert _kill_and_time_restart(restarter, thing) == 1
