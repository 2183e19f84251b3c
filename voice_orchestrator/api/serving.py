"""The dialogue routes' logic: authorise, admit, read the upload, run the turn, answer, count and log.

Both routes run the same turn (`DialoguePipeline.stream`); `/dialogue` joins its sentences into one WAV and
`/dialogue/stream` writes its events as NDJSON. An error becomes the same body either way: a JSON response
before the first byte, a final `error` event after it.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from voice_orchestrator.admission import DialogueSlots
from voice_orchestrator.api.errors import error_body, error_response, internal_error, request_id_of
from voice_orchestrator.api.responses import (
    audio_event,
    dialogue_headers,
    ndjson_line,
    stream_headers,
    wav_bytes,
)
from voice_orchestrator.api.uploads import DialogueForm, UploadLimits, read_dialogue_form
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.metrics import (
    DIALOGUE_LATENCY,
    DIALOGUES,
    DIALOGUES_IN_FLIGHT,
    DIALOGUES_LIMIT,
    REPLIES_CUT,
    TIME_TO_FIRST_AUDIO,
    Meter,
    MetricSpec,
    language_tag,
    outcome_of,
)
from voice_orchestrator.pipeline import DialoguePipeline, TurnEvent
from voice_orchestrator.protocol import (
    ErrorBody,
    SpokenSentence,
    StreamDoneEvent,
    StreamErrorEvent,
    StreamMetadata,
    StreamTranscriptEvent,
)
from voice_orchestrator.settings import IngressSettings

logger = logging.getLogger("voice_orchestrator.api.serving")


def logged_refusal(
    log: logging.Logger, what: str, error: Exception, request_id: str, started: float, **fields: str
) -> OrchestratorError:
    """The typed error a request is refused with (INTERNAL_ERROR for anything unexpected, its traceback in
    the log only, never to the client), logged at WARNING (4xx) or ERROR (5xx) with `fields`."""
    if not isinstance(error, OrchestratorError):
        log.error(
            f"{what} failed",
            exc_info=error,
            extra={"request_id": request_id, "error_code": OrchestratorErrorCode.INTERNAL_ERROR.value},
        )
        error = internal_error()
    log.log(
        logging.WARNING if error.http_status < 500 else logging.ERROR,
        f"{what} refused: %s",
        error.message,
        extra={
            "request_id": request_id,
            "error_code": error.code.value,
            "status_code": error.http_status,
            **fields,
            "duration_ms": round((time.perf_counter() - started) * 1000.0, 1),
        },
    )
    return error


class DialogueService:
    def __init__(self, pipeline: DialoguePipeline, settings: IngressSettings, meter: Meter) -> None:
        self._pipeline = pipeline
        self._meter = meter
        self.slots = DialogueSlots(settings.max_concurrent_dialogues, settings.retry_after_seconds)
        self._uploads = DialogueSlots(
            settings.max_concurrent_uploads, settings.retry_after_seconds, "uploads"
        )
        self.settings = settings

    @property
    def settings(self) -> IngressSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: IngressSettings) -> None:
        """Live settings: the limits change at once; dialogues under way finish as they started."""
        self._settings = settings
        self._pipeline.settings = settings
        self._api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        for slots, limit in (
            (self.slots, settings.max_concurrent_dialogues),
            (self._uploads, settings.max_concurrent_uploads),
        ):
            slots.limit, slots.retry_after = limit, settings.retry_after_seconds
        for spec, value in self.gauges():
            self._meter.record(spec, value)

    def gauges(self) -> list[tuple[MetricSpec, float]]:
        return [(DIALOGUES_LIMIT, float(self.slots.limit)), (DIALOGUES_IN_FLIGHT, float(self.slots.active))]

    def authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key):
            raise OrchestratorError(
                OrchestratorErrorCode.UNAUTHORIZED,
                "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
            )

    async def dialogue(self, request: Request) -> Response:
        """The whole reply as one WAV, the turn's timings and texts in its headers."""
        request_id = request_id_of(request)
        started = time.perf_counter()
        try:
            form = await self._admit(request)
            try:
                result = await self._pipeline.run(
                    form.audio, form.language, request_id, form.session_id, form.voice
                )
            finally:
                self._leave()
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
            form = await self._admit(request)
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

    async def _admit(self, request: Request) -> DialogueForm:
        """Authorise, read the upload (counted as an upload, not yet a dialogue), then take a dialogue slot:
        a slow upload never holds one. A full server refuses before reading a byte, and again after."""
        self.authorize(request)
        if self.slots.full:
            raise self.slots.refusal()
        self._uploads.acquire()
        try:
            form = await read_dialogue_form(request, UploadLimits.of(self._settings))
        finally:
            self._uploads.release()
        self.slots.acquire()
        self._meter.record(DIALOGUES_IN_FLIGHT, float(self.slots.active))
        return form

    def _leave(self) -> None:
        self.slots.release()
        self._meter.record(DIALOGUES_IN_FLIGHT, float(self.slots.active))

    async def _held(self, form: DialogueForm, request_id: str) -> AsyncIterator[TurnEvent]:
        """The turn's events; the dialogue slot is held until they end, however they end."""
        try:
            async for event in self._pipeline.stream(
                form.audio, form.language, request_id, form.session_id, form.voice
            ):
                yield event
        finally:
            self._leave()

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
