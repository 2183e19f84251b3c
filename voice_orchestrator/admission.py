"""Admission control for one ingress replica: how many dialogues (and uploads) may run at once; the excess is
refused at once with a 429 instead of queueing. The limits are read when used, so a live setting changed by
`reconfigure()` applies to the next request without being pushed here."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode

T = TypeVar("T")


def live_value(value: T | Callable[[], T]) -> Callable[[], T]:
    """A setting as a reader: a live one (a callable reading the current settings) or a fixed value."""
    if callable(value):
        return value
    return lambda: value


class DialogueSlots:
    """At most `limit` in flight. The limit is live: lowering it lets the ones already admitted finish and
    refuses new ones until fewer than the limit remain. `kind` names what is counted in the refusal."""

    def __init__(
        self, limit: int | Callable[[], int], retry_after: int | Callable[[], int], kind: str = "dialogues"
    ) -> None:
        self._limit = live_value(limit)
        self._retry_after = live_value(retry_after)
        self.kind = kind
        self.active = 0

    @property
    def limit(self) -> int:
        return self._limit()

    @property
    def full(self) -> bool:
        return self.active >= self.limit

    def refusal(self) -> OrchestratorError:
        limit = self.limit
        return OrchestratorError(
            OrchestratorErrorCode.TOO_MANY_REQUESTS,
            f"The server is handling its maximum of {limit} {self.kind}; retry shortly.",
            details={f"max_concurrent_{self.kind}": limit},
            retry_after=self._retry_after(),
        )

    def acquire(self) -> None:
        if self.full:
            raise self.refusal()
        self.active += 1

    def release(self) -> None:
        self.active = max(0, self.active - 1)
