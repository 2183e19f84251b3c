"""The dialogue routes' logic: the gate (key, upload, admission), the turn, the answer, counts and logs.

Both routes run the same turn (`TurnCore.answer`); `/dialogue` joins its sentences into one WAV and
`/dialogue/stream` writes its events as NDJSON. An error becomes the same body either way: a JSON response
before the first byte, a final `error` event after it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from voice_orchestrator.api.errors import error_body, error_response, request_id_of
from voice_orchestrator.api.gate import Gate, logged_refusal
from voice_orchestrator.api.responses import (
    audio_event,
    dialogue_headers,
    ndjson_line,
    stream_headers,
    wav_bytes,
)
from voice_orchestrator.api.uploads import DialogueForm, read_dialogue_form
from voice_orchestrator.metrics import (
    DIALOGUE_LATENCY,
    DIALOGUES,
    REPLIES_CUT,
    TIME_TO_FIRST_AUDIO,
    Meter,
    language_tag,
    outcome_of,
)
from voice_orchestrator.protocol import (
    ErrorBody,
    SpokenSentence,
    StreamDoneEvent,
    StreamErrorEvent,
    StreamMetadata,
    StreamTranscriptEvent,
)
from voice_orchestrator.turn import TurnCore, TurnEvent

logger = logging.getLogger("voice_orchestrator.api.serving")


class DialogueService:
    def __init__(self, core: TurnCore, gate: Gate, meter: Meter) -> None:
        self._core = core
        self._gate = gate
        self._meter = meter

    async def dialogue(self, request: Request) -> Response:
        """The whole reply as one WAV, the turn's timings and texts in its headers."""
        request_id = request_id_of(request)
        started = time.perf_counter()
        try:
            form = await self._read(request)
            with self._gate.admit():
                result = await self._core.run(
                    form.audio, form.language, request_id, form.session_id, form.voice
                )
            body = await wav_bytes(result.speech)
        except Exception as error:
            return error_response(self._refuse(error, request_id, started, "full"))
        # Without streaming the first audio byte leaves with the whole reply.
        self._served(result.metadata, "full", (time.perf_counter() - started) * 1000.0)
        headers = dialogue_headers(result.metadata, form.session_id)
        return Response(content=body, media_type="audio/wav", headers=headers)

    async def dialogue_stream(self, request: Request) -> Response:
        """The reply as NDJSON events, each sentence as soon as it is spoken."""
        request_id = request_id_of(request)
        started = time.perf_counter()
        try:
            form = await self._read(request)
        except Exception as error:
            return error_response(self._refuse(error, request_id, started, "stream"))
        events = self._held(form, request_id)
        try:
            # Decode and STT happen before the first byte, so their errors keep the JSON contract.
            first = await anext(events)
        except Exception as error:
            return error_response(self._refuse(error, request_id, started, "stream"))
        assert isinstance(first, StreamTranscriptEvent)
        return StreamingResponse(
            self._ndjson(first, events, request_id, started),
            media_type="application/x-ndjson",
            headers=stream_headers(first.text, first.language, first.session_id),
        )

    async def _read(self, request: Request) -> DialogueForm:
        """Authorise and read the upload (counted as an upload, not yet a dialogue): a slow upload never
        holds a dialogue slot."""
        self._gate.authorize(request.headers)
        return await self._gate.read(request, read_dialogue_form)

    async def _held(self, form: DialogueForm, request_id: str) -> AsyncIterator[TurnEvent]:
        """The turn's events; the dialogue slot is held until they end, however they end."""
        with self._gate.admit():
            turn = self._core.stream(form.audio, form.language, request_id, form.session_id, form.voice)
            async for event in turn:
                yield event

    async def _ndjson(
        self, first: StreamTranscriptEvent, events: AsyncIterator[TurnEvent], request_id: str, started: float
    ) -> AsyncIterator[bytes]:
        yield ndjson_line(first)
        try:
            async for event in events:
                if isinstance(event, SpokenSentence):
                    yield ndjson_line(await audio_event(event))
                elif isinstance(event, StreamDoneEvent):
                    self._served(event.metadata, "stream", event.metadata.time_to_first_audio_ms)
                    yield ndjson_line(event)
        except Exception as error:
            # After the first byte the status is sent: the stream ends with the error body as an event.
            body = self._refuse(error, request_id, started, "stream")
            yield ndjson_line(StreamErrorEvent(**body.model_dump()))
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    def _served(self, meta: StreamMetadata, mode: str, first_audio_ms: float) -> None:
        logger.info("dialogue served", extra={"status_code": 200, "mode": mode, **meta.model_dump()})
        tags = {"language": language_tag(meta.input_language), "mode": mode}
        if meta.cut_reason is not None:
            self._meter.record(REPLIES_CUT, 1.0, {**tags, "reason": meta.cut_reason})
        self._meter.record(DIALOGUE_LATENCY, meta.total_ms, tags)
        self._meter.record(TIME_TO_FIRST_AUDIO, first_audio_ms, tags)
        self._meter.record(DIALOGUES, 1.0, {**tags, "outcome": "served", "error_code": "none"})

    def _refuse(self, error: Exception, request_id: str, started: float, mode: str) -> ErrorBody:
        """Log and count a failed dialogue; its error body (INTERNAL_ERROR for anything unexpected)."""
        error = logged_refusal(logger, "dialogue", error, request_id, started, mode=mode)
        tags = {"outcome": outcome_of(error.code), "error_code": error.code.value, "language": "unknown"}
        self._meter.record(DIALOGUES, 1.0, {**tags, "mode": mode})
        return error_body(error, request_id)
