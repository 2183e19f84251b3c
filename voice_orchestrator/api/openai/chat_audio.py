"""Speech in and out of `/v1/chat/completions`, OpenAI's audio-chat shape on the turn core: user content parts
of type `input_audio` (base64 wav/mp3/...) are transcribed as the dialogue hears (same decoding, limits and
errors), and `modalities: ["text", "audio"]` with `audio: {voice, format}` speaks the reply as a turn
(`TurnCore.reply`: the reply guard, the fallback, the next sentence synthesised while this one is sent) into
`message.audio` (`id`, `data`, `transcript`, `expires_at`)."""

from __future__ import annotations

import base64
import binascii
import time
import uuid

from voice_orchestrator.api.openai.chat_protocol import (
    AudioOutput,
    AudioPart,
    ChatCompletionRequest,
    ChatInputMessage,
    ReplyAudio,
    TextPart,
)
from voice_orchestrator.api.openai.gateway import OpenAIGateway
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.turn import VoiceChoice

# How long a client may refer to a spoken reply (OpenAI's `expires_at`; nothing is stored here).
AUDIO_TTL_S = 3600


def has_audio(body: ChatCompletionRequest) -> bool:
    """Whether a user message holds an audio part (a part of an unsupported type: False, refused later)."""
    for message in body.messages:
        try:
            parts = message.parts()
        except ValueError:
            continue
        if any(isinstance(part, AudioPart) for part in parts):
            return True
    return False


class ChatVoice:
    def __init__(self, gateway: OpenAIGateway) -> None:
        self._gateway = gateway

    async def hear(self, body: ChatCompletionRequest) -> tuple[ChatCompletionRequest, str | None]:
        """The request with each audio part replaced by its transcript; the language last heard."""
        heard_language: str | None = None
        messages: list[ChatInputMessage] = []
        for message in body.messages:
            try:
                parts = message.parts()
            except ValueError as error:
                raise OrchestratorError(
                    OrchestratorErrorCode.INVALID_REQUEST, f"{error}.", details={"field": "messages"}
                ) from None
            if not any(isinstance(part, AudioPart) for part in parts):
                messages.append(message)
                continue
            texts: list[str] = []
            for part in parts:
                if isinstance(part, TextPart):
                    texts.append(part.text)
                else:
                    text, heard_language = await self._transcribe(part)
                    texts.append(text)
            messages.append(message.model_copy(update={"content": "\n".join(texts)}))
        return body.model_copy(update={"messages": messages}), heard_language

    async def _transcribe(self, part: AudioPart) -> tuple[str, str]:
        try:
            data = base64.b64decode(part.input_audio.data, validate=True)
        except (binascii.Error, ValueError):
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
                "input_audio.data is not base64.",
                details={"field": "messages"},
            ) from None
        core = self._gateway.core
        heard, _ = await core.hear(await core.decode(data), None)
        return heard.text, heard.language

    async def voice_choice(self, wanted: AudioOutput) -> VoiceChoice:
        """Per sentence: the asked voice, or, for a sentence in a script it cannot read, None (that script's
        default voice)."""
        return (await self._gateway.catalog()).voice_choice(wanted.voice)


def reply_audio(pcm: bytes, wanted: AudioOutput, transcript: str) -> ReplyAudio:
    """A whole spoken reply as `message.audio`, in the asked format (`pcm16`: raw 16-bit 24 kHz mono)."""
    return ReplyAudio(
        id=f"audio_{uuid.uuid4().hex}",
        data=base64.b64encode(pcm).decode("ascii"),
        expires_at=int(time.time()) + AUDIO_TTL_S,
        transcript=transcript,
    )
