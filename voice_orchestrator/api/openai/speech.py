"""`POST /v1/audio/speech`: the input split into sentences, each synthesised by the turn core (`say`: the
next one while this one is sent) and sent as soon as it is ready (`stream_format` `audio`: the encoded
bytes; `sse`: `speech.audio.delta` events, then `speech.audio.done`). The request is checked whole before
the first byte (model, voice against the text's language, the input bound) and the first sentence is
synthesised before the status is sent, so those errors keep their status; a later failure ends the stream
(SSE: with an error event)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from voice_orchestrator.api.openai.encoding import SpeechEncoder, change_tempo
from voice_orchestrator.api.openai.gateway import SSE_HEADERS, OpenAIGateway, Visit, sse_data
from voice_orchestrator.api.openai.protocol import (
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechRequest,
    SpeechUsage,
)
from voice_orchestrator.errors import invalid_request
from voice_orchestrator.protocol import SpeechAudio
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.settings import IngressSettings
from voice_orchestrator.text import clean_for_speech
from voice_orchestrator.turn import Prefetched


def speakable_sentences(
    text: str, soft_split_chars: int, first_soft_split_chars: int | None = None
) -> list[str]:
    """The input as the sentences it is spoken in (markdown, URLs and emoji left out), cut as a streamed reply
    is: the first chunk may end at a comma sooner, since it alone decides when the listener hears anything."""
    splitter = SentenceSplitter(soft_split_chars, first_soft_split_chars)
    pieces = [*splitter.feed(text), *splitter.flush()]
    return [cleaned for piece in pieces if (cleaned := clean_for_speech(piece))]


def check_speech_length(text: str, settings: IngressSettings, field: str) -> None:
    """A client's text to synthesise is within `max_speech_input_chars` (else a 400 naming `field`)."""
    limit = settings.max_speech_input_chars
    if len(text) > limit:
        raise invalid_request(
            f"{field} is {len(text)} characters; the limit is {limit}.",
            field=field,
            max_speech_input_chars=limit,
        )


def sentences_to_speak(text: str, settings: IngressSettings, field: str) -> list[str]:
    """A client's text as the sentences it is spoken in; a 400 naming `field` when nothing is left to
    speak."""
    sentences = speakable_sentences(text, settings.stream_soft_split_chars, settings.stream_first_chunk_chars)
    if not sentences:
        raise invalid_request(f"{field} has nothing to speak (only markup, links or symbols).", field=field)
    return sentences


class SpeechService:
    def __init__(self, gateway: OpenAIGateway) -> None:
        self._gateway = gateway

    async def speak(self, request: Request, visit: Visit) -> Response:
        body = await self._gateway.read_json(request, SpeechRequest)
        check_speech_length(body.input, self._gateway.settings, "input")
        catalog = await self._gateway.catalog()
        catalog.resolve(body.model, "tts")
        voice = catalog.voice_for(body.voice_id, body.input)
        sentences = sentences_to_speak(body.input, self._gateway.settings, "input")
        encoder = SpeechEncoder(body.response_format)
        visit.admit()
        spoken = self._gateway.core.say(sentences, body.language, voice)
        try:  # the first sentence before the status: an engine's refusal is still a proper error response
            first = await anext(spoken)
        except BaseException:
            await spoken.aclose()
            raise
        pieces = self._pieces(first, spoken, body.speed, encoder)
        if body.stream_format == "sse":
            return StreamingResponse(
                self._sse(pieces, len(body.input)), media_type="text/event-stream", headers=SSE_HEADERS
            )
        return StreamingResponse(pieces, media_type=encoder.media_type)

    async def _pieces(
        self,
        first: tuple[str, tuple[SpeechAudio, float]],
        rest: Prefetched[tuple[SpeechAudio, float]],
        speed: float,
        encoder: SpeechEncoder,
    ) -> AsyncIterator[bytes]:
        """Encoded audio, a sentence at a time (the turn core synthesises the next one meanwhile)."""
        item: tuple[str, tuple[SpeechAudio, float]] | None = first
        try:
            while item is not None:
                _, (speech, _ms) = item
                samples = speech.samples
                if speed != 1.0:
                    samples = await asyncio.to_thread(change_tempo, samples, speech.sample_rate, speed)
                if chunk := await asyncio.to_thread(encoder.encode, samples, speech.sample_rate):
                    yield chunk
                item = await anext(rest, None)
            if chunk := await asyncio.to_thread(encoder.finish):
                yield chunk
        finally:
            await rest.aclose()

    async def _sse(self, pieces: AsyncIterator[bytes], characters: int) -> AsyncIterator[bytes]:
        async for chunk in pieces:
            yield sse_data(SpeechAudioDelta(audio=base64.b64encode(chunk).decode("ascii")))
        usage = SpeechUsage(input_tokens=characters, total_tokens=characters)
        yield sse_data(SpeechAudioDone(usage=usage))
