"""Every stage as a small async Protocol: what the turn core (voice_orchestrator/turn.py) and the /v1 routes
talk to. In production they are Ray Serve handles wrapped by `deployments.stage_client`; in unit tests, the
fakes of tests/unit/fakes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from voice_orchestrator.protocol import (
    DecodedAudio,
    ReplyRequest,
    SpeechAudio,
    SpeechTask,
    SynthesisRequest,
    TokenUsage,
    Transcription,
    Turn,
)


class SpeechToTextStage(Protocol):
    async def transcribe(
        self, audio: DecodedAudio, language: str | None, task: SpeechTask = "transcribe"
    ) -> Transcription: ...


class LanguageModelStage(Protocol):
    def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        """Text deltas as the model produces them."""
        ...


class ChatModelStage(LanguageModelStage, Protocol):
    """The LanguageModel stage as `/v1/chat/completions` uses it: deltas, and usage in its own tokens."""

    async def usage(self, request: ReplyRequest, completion: str) -> TokenUsage: ...


class TextToSpeechStage(Protocol):
    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio: ...


class ConversationStage(Protocol):
    """Earlier turns per session id (shared by every ingress replica)."""

    async def history(self, session_id: str) -> list[Turn]: ...

    async def remember(self, session_id: str, turn: Turn) -> None: ...

    async def forget(self, session_id: str) -> bool: ...
