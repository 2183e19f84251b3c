"""Speech in and out of `/v1/chat/completions`, OpenAI's audio-chat shape on our pipeline: user content parts
of type `input_audio` (base64 wav/mp3/...) are transcribed by the SpeechToText stage (same decoding, limits
and errors as the dialogue), and `modalities: ["text", "audio"]` with `audio: {voice, format}` speaks the
reply with the TextToSpeech stage, sentence by sentence, into `message.audio` (`id`, `data`, `transcript`,
`expires_at`)."""

from __future__ import annotations

import asyncio
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
from voice_orchestrator.api.openai.encoding import SpeechEncoder
from voice_orchestrator.api.openai.gateway import OpenAIGateway
from voice_orchestrator.api.openai.speech import SpeechService, speakable_sentences
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.stages import SpeechToTextStage

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
    def __init__(self, gateway: OpenAIGateway, stt: SpeechToTextStage, speech: SpeechService) -> None:
        self._gateway = gateway
        self._stt = stt
        self._speech = speech

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
        _, heard = await self._gateway.hear(self._stt, data, None)
        return heard.text, heard.language

    async def speak(self, text: str, wanted: AudioOutput, language: str) -> ReplyAudio:
        """The whole reply spoken, in the asked format (`pcm16`: raw 16-bit 24 kHz mono)."""
        voice = await self._voice_for(wanted, text)
        encoder = SpeechEncoder("pcm" if wanted.format == "pcm16" else wanted.format)
        data = bytearray()
        for sentence in speakable_sentences(text, self._gateway.settings.stream_soft_split_chars) or [text]:
            speech = await self._speech.synthesize(sentence, voice, language, 1.0)
            data += await asyncio.to_thread(encoder.encode, speech.samples, speech.sample_rate)
        data += await asyncio.to_thread(encoder.finish)
        return ReplyAudio(
            id=f"audio_{uuid.uuid4().hex}",
            data=base64.b64encode(bytes(data)).decode("ascii"),
            expires_at=int(time.time()) + AUDIO_TTL_S,
            transcript=text,
        )

    async def sentence_pcm(self, sentence: str, wanted: AudioOutput, language: str) -> bytes:
        """One sentence of a streamed spoken reply: raw 16-bit 24 kHz mono (OpenAI streams pcm16 only)."""
        voice = await self._voice_for(wanted, sentence)
        speech = await self._speech.synthesize(sentence, voice, language, 1.0)
        return await asyncio.to_thread(SpeechEncoder("pcm").encode, speech.samples, speech.sample_rate)

    async def _voice_for(self, wanted: AudioOutput, text: str) -> str | None:
        """The asked voice, or, for a reply in a script it cannot read, None: that script's default voice."""
        catalog = await self._gateway.catalog()
        try:
            return catalog.voice_for(wanted.voice, text)
        except OrchestratorError:
            return None
