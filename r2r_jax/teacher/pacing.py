"""How many calls may be in flight at once: additive increase, multiplicative decrease (as TCP does).

A timeout or a 429 from a self-hosted server means "busy", not "gone": the server is still computing the
abandoned generations, so re-sending at the same concurrency only queues more work behind them. Each busy
signal halves the number of calls allowed in flight (never below 1); every `grow_after` successes in a row
allow one more again, up to the `--concurrency` the user asked for.
"""

from __future__ import annotations

import threading


class InFlightLimit:
    def __init__(self, maximum: int, grow_after: int = 4):
        self.maximum = max(1, maximum)
        self.limit = self.maximum
        self.grow_after = grow_after
        self._in_flight = 0
        self._streak = 0
        self._cond = threading.Condition()

    def __enter__(self) -> InFlightLimit:
        with self._cond:
            self._cond.wait_for(lambda: self._in_flight < self.limit)
            self._in_flight += 1
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def busy(self) -> None:
        """The server timed out or asked to slow down: halve what may be in flight."""
        with self._cond:
            self.limit = max(1, self.limit // 2)
            self._streak = 0

    def succeeded(self) -> None:
        with self._cond:
            self._streak += 1
            if self._streak >= self.grow_after and self.limit < self.maximum:
                self.limit += 1
                self._streak = 0
                self._cond.notify_all()
