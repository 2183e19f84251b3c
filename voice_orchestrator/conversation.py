"""Conversation memory: the last turns of each session, bounded in turns, characters, sessions and time.

Pure logic (no Ray): the `Conversations` deployment holds one store for every ingress replica, so a follow-up
question reaches the context whichever replica takes it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from voice_orchestrator.protocol import Turn


class ConversationStore:
    def __init__(
        self,
        max_turns: int,
        ttl_seconds: float,
        max_sessions: int,
        max_turn_chars: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit(max_turns, ttl_seconds, max_sessions)
        self._max_turn_chars = max_turn_chars
        self._clock = clock
        # session id -> (last use, turns), least recently used first.
        self._sessions: OrderedDict[str, tuple[float, list[Turn]]] = OrderedDict()

    def limit(self, max_turns: int, ttl_seconds: float, max_sessions: int) -> None:
        """New bounds (live settings): they apply from the next call on."""
        self._max_turns = max_turns
        self._ttl = ttl_seconds
        self._max_sessions = max_sessions

    def history(self, session_id: str) -> list[Turn]:
        self._expire()
        entry = self._sessions.get(session_id)
        return list(entry[1]) if entry else []

    def append(self, session_id: str, turn: Turn) -> None:
        self._expire()
        _, turns = self._sessions.pop(session_id, (0.0, []))
        turns.append(
            Turn(user=turn.user[: self._max_turn_chars], assistant=turn.assistant[: self._max_turn_chars])
        )
        self._sessions[session_id] = (self._clock(), turns[-self._max_turns :])
        while len(self._sessions) > self._max_sessions:
            self._sessions.popitem(last=False)  # the least recently used conversation goes first

    def delete(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def __len__(self) -> int:
        self._expire()
        return len(self._sessions)

    def _expire(self) -> None:
        deadline = self._clock() - self._ttl
        while self._sessions:
            oldest_id, (last_used, _) = next(iter(self._sessions.items()))
            if last_used >= deadline:
                break
            del self._sessions[oldest_id]
