"""Health of one engine: a real but cheap inference, run only when nothing proved the engine works lately.

Every served request that succeeds counts as proof; a failed request, or a long quiet spell, makes the next
health check run the engine's probe. A probe that raises makes Ray Serve's `check_health()` fail, and after
three failures Serve restarts the replica.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from voice_orchestrator.errors import OrchestratorError

T = TypeVar("T")


class EngineHealth:
    def __init__(
        self,
        probe: Callable[[], Awaitable[None]],
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._probe = probe
        self.interval_s = interval_s
        self._clock = clock
        self._last_ok: float | None = None
        self._last_error: str | None = None

    def record_success(self) -> None:
        self._last_ok = self._clock()
        self._last_error = None

    def record_failure(self, error: BaseException) -> None:
        self._last_error = f"{type(error).__name__}: {error}"

    @property
    def last_error(self) -> str | None:
        return self._last_error

    async def check(self) -> None:
        recent = self._last_ok is not None and self._clock() - self._last_ok < self.interval_s
        if recent and self._last_error is None:
            return
        try:
            await self._probe()
        except Exception as error:
            self.record_failure(error)
            raise
        self.record_success()

    async def track(self, work: Awaitable[T]) -> T:
        """Await one served request, counting its outcome as evidence about the engine."""
        try:
            result = await work
        except OrchestratorError as error:
            if error.http_status >= 500:
                self.record_failure(error)
            raise  # a client's mistake (an unknown voice) says nothing about the engine
        except Exception as error:
            self.record_failure(error)
            raise
        self.record_success()
        return result
