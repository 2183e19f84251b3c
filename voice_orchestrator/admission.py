"""Admission control for one ingress replica: how many dialogues (and uploads) may run at once; the excess is
refused at once with a 429 instead of queueing."""

from __future__ import annotations

from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode


class DialogueSlots:
    """At most `limit` in flight. The limit is live: lowering it lets the ones already admitted finish and
    refuses new ones until fewer than the limit remain. `kind` names what is counted in the refusal."""

    def __init__(self, limit: int, retry_after: int, kind: str = "dialogues") -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.kind = kind
        self.active = 0

    @property
    def full(self) -> bool:
        return self.active >= self.limit

    def refusal(self) -> OrchestratorError:
        return OrchestratorError(
            OrchestratorErrorCode.TOO_MANY_REQUESTS,
            f"The server is handling its maximum of {self.limit} {self.kind}; retry shortly.",
            details={f"max_concurrent_{self.kind}": self.limit},
            retry_after=self.retry_after,
        )

    def acquire(self) -> None:
        if self.full:
            raise self.refusal()
        self.active += 1

    def release(self) -> None:
        self.active = max(0, self.active - 1)
