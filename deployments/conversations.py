"""Conversations deployment: the session memory every ingress replica shares.

One replica by design: it holds the state, so a follow-up question finds its context whichever ingress
replica takes it. Calls are dictionary lookups (microseconds); the cost is one handle hop per turn.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from deployments._replica import setup_replica
from voice_orchestrator.conversation import ConversationStore
from voice_orchestrator.protocol import Turn
from voice_orchestrator.settings import SessionSettings, apply_live


@serve.deployment(ray_actor_options={"num_cpus": 0.05}, num_replicas=1, max_ongoing_requests=1000)
class Conversations:
    def __init__(self, settings: SessionSettings | None = None) -> None:
        # `settings`: the live settings to start with (a user_config, when there is one, replaces them).
        setup_replica()
        given = settings.model_dump(include=set(SessionSettings.model_fields)) if settings else {}
        self._live = SessionSettings(**given)
        self._configured = False
        self._store = ConversationStore(
            self._live.session_max_turns, self._live.session_ttl_seconds, self._live.max_sessions
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Live settings (the deployment's user_config): turns, idle time and sessions kept."""
        self._live = apply_live(SessionSettings, config, self._live if self._configured else None)
        self._configured = True
        live = self._live
        self._store.limit(live.session_max_turns, live.session_ttl_seconds, live.max_sessions)

    async def history(self, session_id: str) -> list[Turn]:
        return self._store.history(session_id)

    async def remember(self, session_id: str, turn: Turn) -> None:
        self._store.append(session_id, turn)

    async def forget(self, session_id: str) -> bool:
        return self._store.delete(session_id)
