"""Conversations deployment: the session memory every ingress replica shares.

One replica by design: it holds the state, so a follow-up question finds its context whichever ingress
replica takes it. Calls are dictionary lookups (microseconds); the cost is one handle hop per turn.
"""

from __future__ import annotations

from ray import serve

from deployments._replica import setup_replica
from voice_orchestrator.conversation import ConversationStore
from voice_orchestrator.protocol import Turn
from voice_orchestrator.settings import OrchestratorSettings


@serve.deployment(ray_actor_options={"num_cpus": 0.05}, num_replicas=1, max_ongoing_requests=1000)
class Conversations:
    def __init__(self, settings: OrchestratorSettings) -> None:
        setup_replica(settings)
        self._store = ConversationStore(
            max_turns=settings.session_max_turns,
            ttl_seconds=settings.session_ttl_seconds,
            max_sessions=settings.max_sessions,
        )

    async def history(self, session_id: str) -> list[Turn]:
        return self._store.history(session_id)

    async def remember(self, session_id: str, turn: Turn) -> None:
        self._store.append(session_id, turn)

    async def forget(self, session_id: str) -> bool:
        return self._store.delete(session_id)

    async def sessions(self) -> int:
        return len(self._store)
