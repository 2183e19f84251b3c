"""What every `/v1` request goes through, as the dialogue routes do: the API key, admission (the same slots
as the dialogues: a transcription or a synthesis is a stage's work too), the body under the upload limits, one
log line and the metrics; an error becomes OpenAI's error shape with the status of the one error table."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from voice_orchestrator.api.errors import error_body, error_response, request_id_of
from voice_orchestrator.api.openai.catalog import Catalog, ModelCatalog
from voice_orchestrator.api.serving import DialogueService, logged_refusal
from voice_orchestrator.api.uploads import UploadLimits, limited_request
from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode, openai_error
from voice_orchestrator.metrics import OPENAI_LATENCY, OPENAI_REQUESTS, Meter, outcome_of
from voice_orchestrator.pipeline import require_speech, stage_error, stage_timeouts
from voice_orchestrator.protocol import DecodedAudio, SpeechTask, Transcription
from voice_orchestrator.settings import IngressSettings
from voice_orchestrator.stages import SpeechToTextStage

logger = logging.getLogger("voice_orchestrator.api.openai")

ModelT = TypeVar("ModelT", bound=BaseModel)
T = TypeVar("T")
Handler = Callable[[str], Awaitable[Response]]


def sse_data(payload: BaseModel | Mapping[str, object] | str) -> bytes:
    """One server-sent event as OpenAI writes them: `data: <json>` and a blank line."""
    if isinstance(payload, BaseModel):
        text = payload.model_dump_json(exclude_none=True)
    elif isinstance(payload, Mapping):
        text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    else:
        text = payload
    return f"data: {text}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class OpenAIGateway:
    def __init__(self, dialogues: DialogueService, meter: Meter, catalog: ModelCatalog) -> None:
        self._dialogues = dialogues
        self._meter = meter
        self._catalog = catalog

    @property
    def settings(self) -> IngressSettings:
        return self._dialogues.settings

    async def catalog(self) -> Catalog:
        return await self._catalog.get()

    async def call_stage(self, stage: str, call: Awaitable[T]) -> T:
        """A stage call under its timeout (504 PROCESSING_TIMEOUT), a broken stage its own 503, as the
        dialogue pipeline maps them; the stage's own refusals (an unknown voice) pass through."""
        settings = self.settings
        timeout = stage_timeouts(settings)[stage]
        try:
            async with asyncio.timeout(timeout):
                return await call
        except OrchestratorError:
            raise
        except Exception as error:
            raise stage_error(stage, error, timeout, settings.retry_after_seconds) from None

    async def hear(
        self, stt: SpeechToTextStage, upload: bytes, language: str | None, task: SpeechTask = "transcribe"
    ) -> tuple[DecodedAudio, Transcription]:
        """An uploaded recording decoded and recognised as the dialogue does it (bad audio 400, too short or
        too long 400, no speech 422)."""
        settings = self.settings
        limits = AudioLimits(settings.min_audio_seconds, settings.max_audio_seconds)
        audio = await asyncio.to_thread(decode_audio, upload, limits)
        heard = await self.call_stage("stt", stt.transcribe(audio, language, task))
        return audio, require_speech(heard, audio)

    async def read_json(self, request: Request, model: type[ModelT]) -> ModelT:
        """The JSON body as `model`, read within the upload limits; a bad one is a 400 naming the field."""
        body = await limited_request(request, UploadLimits.of(self.settings)).body()
        try:
            return model.model_validate_json(body)
        except ValidationError as error:
            fields = [".".join(str(part) for part in item["loc"]) for item in error.errors()][:5]
            first = error.errors()[0] if error.errors() else None
            reason = f"{fields[0]}: {first['msg']}" if first and fields and fields[0] else "invalid JSON"
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST,
                f"The request body is invalid ({reason[:200]}).",
                details={
                    "field": fields[0].split(".")[0] if fields and fields[0] else None,
                    "fields": fields,
                },
            ) from None

    async def handle(self, request: Request, route: str, handler: Handler, *, admit: bool = True) -> Response:
        """Authorise, take a slot (`admit`: routes that run a model), run `handler(request_id)`; a streamed
        response keeps its slot until its last byte. Any error is answered in OpenAI's shape."""
        request_id = request_id_of(request)
        started = time.perf_counter()
        slots = self._dialogues.slots
        try:
            self._dialogues.authorize(request)
            if admit:
                slots.acquire()
            try:
                response = await handler(request_id)
            except BaseException:
                if admit:
                    slots.release()
                raise
        except Exception as error:
            return self.refuse(error, request_id, route, started)
        if isinstance(response, StreamingResponse):
            sse = (response.media_type or "").startswith("text/event-stream")
            response.body_iterator = self._held(
                response.body_iterator, sse, route, request_id, started, admit
            )
            return response
        if admit:
            slots.release()
        self._served(route, request_id, started)
        return response

    async def _held(
        self,
        body: AsyncIterable[str | bytes | memoryview],
        sse: bool,
        route: str,
        request_id: str,
        started: float,
        admit: bool,
    ) -> AsyncIterator[bytes]:
        """The stream's bytes; an error after the first byte ends an SSE stream with OpenAI's error event
        (`data: {"error": ...}`) and cuts a raw audio stream (its status is sent already)."""
        try:
            async for chunk in body:
                yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        except Exception as error:
            refused = self._logged(error, request_id, route, started)
            if not sse:
                raise
            status = refused.http_status
            yield sse_data(openai_error(refused.code.value, refused.message, refused.details, status))
        else:
            self._served(route, request_id, started)
        finally:
            if admit:
                self._dialogues.slots.release()
            close = getattr(body, "aclose", None)
            if close is not None:
                await close()

    def _served(self, route: str, request_id: str, started: float) -> None:
        elapsed = (time.perf_counter() - started) * 1000.0
        logger.info(
            "openai request served",
            extra={
                "request_id": request_id,
                "status_code": 200,
                "route": route,
                "duration_ms": round(elapsed, 1),
            },
        )
        self._meter.record(OPENAI_REQUESTS, 1.0, {"route": route, "outcome": "served", "error_code": "none"})
        self._meter.record(OPENAI_LATENCY, elapsed, {"route": route})

    def _logged(self, error: Exception, request_id: str, route: str, started: float) -> OrchestratorError:
        error = logged_refusal(logger, "openai request", error, request_id, started, route=route)
        tags = {"route": route, "outcome": outcome_of(error.code), "error_code": error.code.value}
        self._meter.record(OPENAI_REQUESTS, 1.0, tags)
        return error

    def refuse(self, error: Exception, request_id: str, route: str, started: float) -> Response:
        refused = self._logged(error, request_id, route, started)
        return error_response(error_body(refused, request_id), openai=True)
