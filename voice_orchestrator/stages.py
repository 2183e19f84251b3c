"""The three stages as small async Protocols the pipeline talks to.

In production they are Ray Serve handles wrapped by `deployments.ingress`; in unit tests, fakes.
"""

from __future__ import annotations

from typing import Protocol

from voice_orchestrator.protocol import (
    DecodedAudio,
    Reply,
    ReplyRequest,
    SpeechAudio,
    SynthesisRequest,
    Transcription,
)


class SpeechToTextStage(Protocol):
    async def transcribe(self, audio: DecodedAudio, language: str | None) -> Transcription: ...


class LanguageModelStage(Protocol):
    async def reply(self, request: ReplyRequest) -> Reply: ...


class TextToSpeechStage(Protocol):
    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio: ...
