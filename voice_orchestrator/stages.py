"""The three stages as small async Protocols the pipeline talks to.

In production they are Ray Serve handles wrapped by `deployments.ingress`; in unit tests, fakes.
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


class TextToSpeechStage(Protocol):
    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio: ...


class ConversationStage(Protocol):
    """Earlier turns per session id (shared by every ingress replica)."""

    async def history(self, session_id: str) -> list[Turn]: ...

    async def remember(self, session_id: str, turn: Turn) -> None: ...

    async def forget(self, session_id: str) -> bool: ...
