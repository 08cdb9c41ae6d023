"""How fast a transport may take messages (SPEC §11): a per-second limit on the real clock, and per-hour
and per-day limits counted on the delivery clock (``--at``) from the recorded hand-overs, so they hold
across runs."""

from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from dmops.workspace import Rate

WINDOW = 1.02  # seconds: a little over one, so that no one-second window seen by the server holds more


class Pace:
    """The limits of one transport; thread-safe."""

    def __init__(self, rate: Rate, handed_over: Iterable[datetime]) -> None:
        self.rate = rate
        self._times = sorted(handed_over)  # hand-overs on the delivery clock, within the last day
        self._recent: deque[float] = deque()  # real-clock hand-overs within the last second
        self._lock = threading.Lock()

    def capped(self, at: datetime) -> str | None:
        """The window (``per_hour``, ``per_day``) whose limit is reached at ``at``, or None."""
        with self._lock:
            return self._capped(at)

    def _capped(self, at: datetime) -> str | None:
        for key, span, limit in (("per_hour", 1, self.rate.per_hour), ("per_day", 24, self.rate.per_day)):
            if limit is not None:
                since = at - timedelta(hours=span)
                if len(self._times) - bisect.bisect_right(self._times, since) >= limit:
                    return key
        return None

    def take(self, clock: Callable[[], datetime]) -> str | None:
        """Wait until the per-second limit lets one more message go and count it; or, without waiting, the
        window whose limit is reached (nothing counted)."""
        per_second = self.rate.per_second
        burst = max(1, int(per_second)) if per_second else 0
        window = WINDOW * max(1.0, burst / per_second) if per_second else 0.0  # 0.5/s: one per 2 s
        while True:
            with self._lock:
                at = clock()
                capped = self._capped(at)
                if capped is not None:
                    return capped
                now = time.monotonic()
                while self._recent and now - self._recent[0] >= window:
                    self._recent.popleft()
                if per_second is None or len(self._recent) < burst:
                    if per_second is not None:
                        self._recent.append(now)
                    bisect.insort(self._times, at)
                    return None
                wait = window - (now - self._recent[0])
            time.sleep(max(wait, 0.001))
