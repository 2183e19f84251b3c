"""Orchestrator: the FastAPI ingress deployment. It admits, parses and answers; the pipeline does the work.

No `from __future__ import annotations` here: FastAPI must see real annotations on the routes that
`@serve.ingress` rebinds to the class.
"""

import asyncio
import base64
import hmac
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from ray import serve
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import FormData, UploadFile

from deployments._metrics import ServeMeter, keep_gauges_fresh
from deployments._replica import setup_replica
from voice_orchestrator import __version__
from voice_orchestrator.audio import encode_wav_pcm16
from voice_orchestrator.errors import HTTP_STATUS, RETRYABLE, OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.metrics import (
    DIALOGUE_LATENCY,
    DIALOGUES,
    DIALOGUES_IN_FLIGHT,
    DIALOGUES_LIMIT,
    TIME_TO_FIRST_AUDIO,
    Meter,
    MetricSpec,
    language_tag,
    outcome_of,
)
from voice_orchestrator.pipeline import DialoguePipeline, DialogueSlots, StreamItem, normalize_session_id
from voice_orchestrator.protocol import (
    DecodedAudio,
    DialogueResult,
    EngineInfo,
    ErrorBody,
    Reply,
    ReplyRequest,
    ServiceStatus,
    SpeechAudio,
    SpokenSentence,
    StatusResponse,
    StreamAudioEvent,
    StreamDoneEvent,
    StreamErrorEvent,
    StreamTranscriptEvent,
    SynthesisRequest,
    Transcription,
    Turn,
)
from voice_orchestrator.settings import OrchestratorSettings
from voice_orchestrator.status import StageObservation, assess_stage, overall_health
from voice_orchestrator.text import header_text

logger = logging.getLogger("deployments.ingress")

DIALOGUE_ROUTE = "/api/orchestrator/dialogue"
STREAM_ROUTE = "/api/orchestrator/dialogue/stream"
SESSION_ROUTE = "/api/orchestrator/sessions/{session_id}"
STATUS_ROUTE = "/api/orchestrator/status"
PAGE = resources.files("voice_orchestrator") / "web" / "index.html"

app = FastAPI(
    title="Voice dialogue orchestrator",
    version=__version__,
    description="Speech in, speech out: speech-to-text -> language model -> text-to-speech on Ray Serve.",
)


class _StageClient:
    """Adapts a Serve handle to a pipeline stage: cancels abandoned calls, maps a full queue to 429."""

    def __init__(self, handle: DeploymentHandle[Any], stage: str, retry_after: int) -> None:
        self._handle = handle
        self._stage = stage
        self._retry_after = retry_after

    async def _call(self, method: str, *args: Any) -> Any:
        response: Any = getattr(self._handle, method).remote(*args)
        try:
            return await response
        except asyncio.CancelledError:  # the pipeline's timeout fired: free the replica too
            response.cancel()
            raise
        except BackPressureError:
            raise self._queue_full() from None
        except OrchestratorError as error:  # the stage refused the request (e.g. an unknown voice)
            raise OrchestratorError(
                error.code, error.message, details=error.details, retry_after=error.retry_after
            ) from None

    def _queue_full(self) -> OrchestratorError:
        return OrchestratorError(
            OrchestratorErrorCode.TOO_MANY_REQUESTS,
            f"The {self._stage.upper()} service's queue is full; retry shortly.",
            details={"stage": self._stage},
            retry_after=self._retry_after,
        )


class _SpeechToTextClient(_StageClient):
    async def transcribe(self, audio: DecodedAudio, language: str | None) -> Transcription:
        result: Transcription = await self._call("transcribe", audio, language)
        return result


class _LanguageModelClient(_StageClient):
    async def reply(self, request: ReplyRequest) -> Reply:
        result: Reply = await self._call("reply", request)
        return result

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        deltas: Any = self._handle.options(stream=True).stream.remote(request)
        finished = False
        try:
            async for delta in deltas:
                yield delta
            finished = True
        except BackPressureError:
            raise self._queue_full() from None
        finally:
            if not finished:  # the client left, a timeout fired or TTS failed: stop generating
                deltas.cancel()


class _TextToSpeechClient(_StageClient):
    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        result: SpeechAudio = await self._call("synthesize", request)
        return result


class _ConversationsClient:
    """The shared session memory; a slow or missing store must not hold a dialogue up for long."""

    def __init__(self, handle: DeploymentHandle[Any], timeout: float) -> None:
        self._handle = handle
        self._timeout = timeout

    async def history(self, session_id: str) -> list[Turn]:
        turns: list[Turn] = await asyncio.wait_for(self._handle.history.remote(session_id), self._timeout)
        return turns

    async def remember(self, session_id: str, turn: Turn) -> None:
        await asyncio.wait_for(self._handle.remember.remote(session_id, turn), self._timeout)

    async def forget(self, session_id: str) -> bool:
        deleted: bool = await asyncio.wait_for(self._handle.forget.remote(session_id), self._timeout)
        return deleted


class SessionDeleted(BaseModel):
    session_id: str
    deleted: bool


def ndjson_line(event: BaseModel) -> bytes:
    return (event.model_dump_json() + "\n").encode()


def request_id_of(request: Request) -> str:
    """The request's id. Serve's proxy puts the client's X-Request-ID (or a new id) on every request and
    echoes it as the response's X-Request-ID header, so we reuse it rather than add a second header."""
    existing = getattr(request.state, "request_id", None)
    if isinstance(existing, str):
        return existing
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    request.state.request_id = request_id
    return request_id


def error_response(error: OrchestratorError, request_id: str) -> JSONResponse:
    retry_after = error.retry_after
    if retry_after is None and error.code in RETRYABLE:
        retry_after = 1
    body = ErrorBody(
        error_code=error.code.value,
        message=error.message,
        details=error.details,
        retry_after=retry_after,
        request_id=request_id,
    )
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return JSONResponse(body.model_dump(), status_code=error.http_status, headers=headers)


@app.exception_handler(OrchestratorError)
async def _orchestrator_error(request: Request, error: OrchestratorError) -> JSONResponse:
    return error_response(error, request_id_of(request))


@app.exception_handler(Exception)
async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    request_id = request_id_of(request)
    logger.exception(
        "unhandled error",
        extra={"request_id": request_id, "error_code": OrchestratorErrorCode.INTERNAL_ERROR},
    )
    internal = OrchestratorError(OrchestratorErrorCode.INTERNAL_ERROR, "An internal error occurred.")
    return error_response(internal, request_id)


async def read_form(request: Request, max_bytes: int) -> FormData:
    """Parse the multipart body, refusing it once more than `max_bytes` arrived (never buffered whole)."""
    too_large = OrchestratorError(
        OrchestratorErrorCode.PAYLOAD_TOO_LARGE,
        f"The upload exceeds the {max_bytes} byte limit.",
        details={"max_upload_bytes": max_bytes},
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    received = 0
    receive = request.receive

    async def counting_receive() -> dict[str, Any]:
        nonlocal received
        message: dict[str, Any] = dict(await receive())
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > max_bytes:
                raise too_large
        return message

    limited = Request(request.scope, counting_receive)
    try:
        return await limited.form(max_files=1, max_fields=8)
    except OrchestratorError:
        raise
    except Exception as error:  # malformed multipart, wrong content type, too many parts
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
            "Send the audio as multipart/form-data with a file field named 'audio'.",
            details={"reason": str(error)[:200] or type(error).__name__},
        ) from None


def dialogue_headers(result: DialogueResult) -> dict[str, str]:
    meta = result.metadata
    return {
        "X-Processing-Time-Total": f"{meta.total_ms:.1f}",
        "X-Processing-Time-STT": f"{meta.stt_ms:.1f}",
        "X-Processing-Time-LLM": f"{meta.llm_ms:.1f}",
        "X-Processing-Time-TTS": f"{meta.tts_ms:.1f}",
        "X-Input-Text": header_text(meta.input_text),
        "X-Input-Language": meta.input_language,
        "X-Input-Duration": f"{meta.input_duration_s:.3f}",
        "X-Output-Text": header_text(meta.output_text),
        "X-Output-Duration": f"{meta.output_duration_s:.3f}",
        "X-Output-Sample-Rate": str(meta.output_sample_rate),
    }


def _error_responses(*codes: OrchestratorErrorCode) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error responses, grouped by HTTP status from the one error table."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status = HTTP_STATUS[code]
        entry = responses.setdefault(status, {"model": ErrorBody, "description": ""})
        entry["description"] = " | ".join(filter(None, [entry["description"], code.value]))
        if code in RETRYABLE:
            entry["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
    return responses


_TEXT_HEADER = {"description": "UTF-8, percent-encoded", "schema": {"type": "string"}}
_NUMBER_HEADER = {"schema": {"type": "number"}}
DIALOGUE_DOCS: dict[str, Any] = {
    "summary": "Answer a spoken question with speech",
    "response_class": Response,
    "responses": {
        200: {
            "description": "The spoken reply, PCM16 mono WAV",
            "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                **{
                    f"X-Processing-Time-{stage}": {"description": "milliseconds", **_NUMBER_HEADER}
                    for stage in ("Total", "STT", "LLM", "TTS")
                },
                "X-Input-Text": _TEXT_HEADER,
                "X-Input-Language": {"schema": {"type": "string"}},
                "X-Input-Duration": {"description": "seconds", **_NUMBER_HEADER},
                "X-Output-Text": _TEXT_HEADER,
                "X-Output-Duration": {"description": "seconds", **_NUMBER_HEADER},
                "X-Output-Sample-Rate": {"description": "Hz", "schema": {"type": "integer"}},
                "X-Request-ID": {"schema": {"type": "string"}},
            },
        },
        **_error_responses(*OrchestratorErrorCode),
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["audio"],
                        "properties": {
                            "audio": {
                                "type": "string",
                                "format": "binary",
                                "description": "WAV, FLAC, OGG, MP3, WebM or M4A; decided from the bytes",
                            },
                            "language": {
                                "type": "string",
                                "description": "Whisper language code (ja, en, ...); absent/'auto' = detect",
                            },
                            "session_id": {
                                "type": "string",
                                "description": "Keeps the conversation's last turns as context (also the "
                                "X-Session-ID header); absent = stateless",
                            },
                            "voice": {
                                "type": "string",
                                "description": "A voice of the TTS engine (Kokoro: jf_alpha, jm_kumo, ...; "
                                "Coqui: a speaker name); absent = the configured voice",
                            },
                        },
                    }
                }
            },
        }
    },
}
DIALOGUE_DOCS["responses"][200]["headers"]["X-Session-ID"] = {"schema": {"type": "string"}}
STREAM_DOCS: dict[str, Any] = {
    "summary": "Answer a spoken question with speech, sentence by sentence as it is produced",
    "description": "Same input and errors (before the first byte) as the dialogue route. The body is NDJSON: "
    "a `transcript` event, one `audio` event per sentence (base64 PCM16 mono WAV, playable on its own), then "
    "`done` with the timings, or `error` (the error body's fields) when a stage fails mid-stream.",
    "response_class": StreamingResponse,
    "responses": {
        200: {
            "description": "NDJSON events: transcript, audio..., done | error",
            "content": {
                "application/x-ndjson": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/StreamTranscriptEvent"},
                            {"$ref": "#/components/schemas/StreamAudioEvent"},
                            {"$ref": "#/components/schemas/StreamDoneEvent"},
                            {"$ref": "#/components/schemas/StreamErrorEvent"},
                        ]
                    }
                }
            },
            "headers": {
                "X-Input-Text": _TEXT_HEADER,
                "X-Input-Language": {"schema": {"type": "string"}},
                "X-Session-ID": {"schema": {"type": "string"}},
                "X-Request-ID": {"schema": {"type": "string"}},
            },
        },
        **_error_responses(*OrchestratorErrorCode),
    },
    "openapi_extra": DIALOGUE_DOCS["openapi_extra"],
}
SESSION_DOCS: dict[str, Any] = {
    "summary": "Forget a conversation",
    "response_model": SessionDeleted,
    "responses": _error_responses(OrchestratorErrorCode.INVALID_REQUEST, OrchestratorErrorCode.UNAUTHORIZED),
}
STATUS_DOCS: dict[str, Any] = {
    "summary": "Health of every stage",
    "response_model": StatusResponse,
    "responses": {
        503: {"model": StatusResponse, "description": "unhealthy: some stage cannot serve"},
        **_error_responses(OrchestratorErrorCode.UNAUTHORIZED),
    },
}


def _enum_name(value: object) -> str:
    # serve.status() hands back Serve's str-enums in some fields and plain strings in others.
    return str(getattr(value, "value", value))


class StatusReporter:
    """Builds /status from serve.status() and a live ping of each stage; shares and caches the work."""

    def __init__(self, stages: dict[str, DeploymentHandle[Any]], settings: OrchestratorSettings) -> None:
        self._stages = stages
        self._settings = settings
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, ServiceStatus]] | None = None
        self._known_info: dict[str, EngineInfo] = {}

    async def services(self) -> dict[str, ServiceStatus]:
        async with self._lock:  # concurrent /status calls wait for one refresh instead of each pinging
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < self._settings.status_cache_seconds:
                return self._cached[1]
            services = await self._observe()
            self._cached = (time.monotonic(), services)
            return services

    async def _observe(self) -> dict[str, ServiceStatus]:
        # serve.status() is ~50 ms of controller RPC: run it in a thread while the pings go out.
        status_call = asyncio.create_task(asyncio.to_thread(serve.status))
        pings = await asyncio.gather(*(self._ping(stage, handle) for stage, handle in self._stages.items()))
        serve_status = await status_call
        services: dict[str, ServiceStatus] = {}
        for (stage, handle), (ping_ms, ping_error) in zip(self._stages.items(), pings, strict=True):
            # The handle names its own application: a stage may be shared with another app.
            application = serve_status.applications.get(handle.app_name)
            deployment = application.deployments.get(handle.deployment_name) if application else None
            observation = StageObservation(
                deployment_state=_enum_name(deployment.status) if deployment else None,
                replica_states={
                    _enum_name(state): count for state, count in deployment.replica_states.items()
                }
                if deployment
                else {},
                deployment_message=deployment.message if deployment else "",
                ping_ms=ping_ms,
                ping_error=ping_error,
                info=self._known_info.get(stage),
            )
            services[stage] = assess_stage(observation, self._settings.status_slow_ping_ms)
        return services

    async def _ping(self, stage: str, handle: DeploymentHandle[Any]) -> tuple[float | None, str | None]:
        started = time.perf_counter()
        response: Any = handle.info.remote()
        try:
            info = await asyncio.wait_for(response, timeout=self._settings.status_ping_timeout_seconds)
        except TimeoutError:
            response.cancel()
            return None, f"no answer within {self._settings.status_ping_timeout_seconds:g} s"
        except Exception as error:
            return None, type(error).__name__
        self._known_info[stage] = info
        return round((time.perf_counter() - started) * 1000.0, 1), None


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=100)
@serve.ingress(app)
class Orchestrator:
    def __init__(
        self,
        stt: DeploymentHandle[Any],
        llm: DeploymentHandle[Any],
        tts: DeploymentHandle[Any],
        settings: OrchestratorSettings,
        conversations: DeploymentHandle[Any] | None = None,
    ) -> None:
        setup_replica(settings)
        retry = settings.retry_after_seconds
        self._settings = settings
        # A session lookup is a dictionary read: bound it like a status ping.
        timeout = settings.status_ping_timeout_seconds
        self._conversations = _ConversationsClient(conversations, timeout) if conversations else None
        self._pipeline = DialoguePipeline(
            _SpeechToTextClient(stt, "stt", retry),
            _LanguageModelClient(llm, "llm", retry),
            _TextToSpeechClient(tts, "tts", retry),
            settings,
            self._conversations,
        )
        self._slots = DialogueSlots(settings.max_concurrent_dialogues, retry)
        self._status = StatusReporter({"stt": stt, "llm": llm, "tts": tts}, settings)
        self._api_key = settings.api_key.get_secret_value().encode() if settings.api_key else None
        self._page = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else "<h1>voice-orchestrator</h1>"
        self._meter: Meter = ServeMeter()
        self._stop_gauges = keep_gauges_fresh(self._meter, self._gauges)
        for spec, value in self._gauges():
            self._meter.record(spec, value)

    def _gauges(self) -> list[tuple[MetricSpec, float]]:
        return [(DIALOGUES_LIMIT, float(self._slots.limit)), (DIALOGUES_IN_FLIGHT, float(self._slots.active))]

    def __del__(self) -> None:
        self._stop_gauges.set()

    def _authorize(self, request: Request) -> None:
        if self._api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._api_key):
            raise OrchestratorError(
                OrchestratorErrorCode.UNAUTHORIZED,
                "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
            )

    @app.get("/", include_in_schema=False)
    async def page(self) -> HTMLResponse:
        """The push-to-talk browser client (its API key, if any, is typed in by the user)."""
        return HTMLResponse(self._page)

    @app.get(STATUS_ROUTE, **STATUS_DOCS)
    async def status(self, request: Request) -> JSONResponse:
        self._authorize(request)
        services = await self._status.services()
        report = StatusResponse(
            status=overall_health(services.values()),
            services=services,
            active_dialogues=self._slots.active,
            max_concurrent_dialogues=self._slots.limit,
            version=__version__,
            timestamp=datetime.now(UTC),
        )
        code = 503 if report.status == "unhealthy" else 200
        return JSONResponse(report.model_dump(mode="json"), status_code=code)

    @app.post(DIALOGUE_ROUTE, **DIALOGUE_DOCS)
    async def dialogue(self, request: Request) -> Response:
        request_id = request_id_of(request)
        started = time.perf_counter()
        try:
            self._admit(request)
            try:
                upload, language, session_id, voice = await self._read_question(request)
                result = await self._pipeline.run(upload, language, request_id, session_id, voice)
            finally:
                self._leave()
            body = await asyncio.to_thread(encode_wav_pcm16, result.speech.samples, result.speech.sample_rate)
        except Exception as error:
            return self._refuse(error, request_id, started, "full")
        meta = result.metadata
        logger.info("dialogue served", extra={"status_code": 200, "mode": "full", **meta.model_dump()})
        # Without streaming the first audio byte leaves with the whole reply.
        self._served(meta.input_language, "full", meta.total_ms, (time.perf_counter() - started) * 1000.0)
        headers = dialogue_headers(result)
        if session_id:
            headers["X-Session-ID"] = session_id
        return Response(content=body, media_type="audio/wav", headers=headers)

    @app.post(STREAM_ROUTE, **STREAM_DOCS)
    async def dialogue_stream(self, request: Request) -> Response:
        request_id = request_id_of(request)
        started = time.perf_counter()
        try:
            self._admit(request)
        except Exception as error:
            return self._refuse(error, request_id, started, "stream")
        events = self._stream_items(request, request_id)
        try:
            # Decode and STT happen before the first byte, so their errors keep the JSON contract.
            first = await anext(events)
        except Exception as error:
            return self._refuse(error, request_id, started, "stream")
        assert isinstance(first, StreamTranscriptEvent)
        headers = {
            "X-Input-Text": header_text(first.text),
            "X-Input-Language": first.language,
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # proxies must pass each event on at once
        }
        if first.session_id:
            headers["X-Session-ID"] = first.session_id
        return StreamingResponse(
            self._ndjson(first, events, request_id, started),
            media_type="application/x-ndjson",
            headers=headers,
        )

    @app.delete(SESSION_ROUTE, **SESSION_DOCS)
    async def forget_session(self, session_id: str, request: Request) -> JSONResponse:
        self._authorize(request)
        checked = normalize_session_id(session_id)
        if checked is None:
            raise OrchestratorError(OrchestratorErrorCode.INVALID_REQUEST, "session_id is empty.")
        deleted = await self._conversations.forget(checked) if self._conversations else False
        return JSONResponse(SessionDeleted(session_id=checked, deleted=deleted).model_dump())

    def _admit(self, request: Request) -> None:
        self._authorize(request)
        self._slots.acquire()  # refuse at once when full, before reading a byte of the body
        self._meter.record(DIALOGUES_IN_FLIGHT, float(self._slots.active))

    def _leave(self) -> None:
        self._slots.release()
        self._meter.record(DIALOGUES_IN_FLIGHT, float(self._slots.active))

    async def _read_question(self, request: Request) -> tuple[bytes, str | None, str | None, str | None]:
        """The upload, the `language` field, the session id (form field or X-Session-ID header), the voice."""
        form = await read_form(request, self._settings.max_upload_bytes)
        upload = form.get("audio")
        if not isinstance(upload, UploadFile):
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
                "The request has no file field named 'audio'.",
                details={"field": "audio"},
            )
        language = form.get("language")
        session = form.get("session_id")
        session_id = normalize_session_id(
            session if isinstance(session, str) else request.headers.get("x-session-id")
        )
        voice = form.get("voice")
        voice = voice.strip() if isinstance(voice, str) and voice.strip() else None
        if voice is not None and len(voice) > 64:
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST, "voice is too long.", details={"field": "voice"}
            )
        text_language = language if isinstance(language, str) else None
        return await upload.read(), text_language, session_id, voice

    async def _stream_items(self, request: Request, request_id: str) -> AsyncIterator[StreamItem]:
        """The pipeline's stream; the dialogue slot is held until it ends, however it ends."""
        try:
            upload, language, session_id, voice = await self._read_question(request)
            async for item in self._pipeline.stream(upload, language, request_id, session_id, voice):
                yield item
        finally:
            self._leave()

    async def _ndjson(
        self,
        first: StreamTranscriptEvent,
        events: AsyncIterator[StreamItem],
        request_id: str,
        started: float,
    ) -> AsyncIterator[bytes]:
        yield ndjson_line(first)
        try:
            async for item in events:
                if isinstance(item, SpokenSentence):
                    speech = item.speech
                    wav = await asyncio.to_thread(encode_wav_pcm16, speech.samples, speech.sample_rate)
                    yield ndjson_line(
                        StreamAudioEvent(
                            index=item.index,
                            text=item.text,
                            sample_rate=speech.sample_rate,
                            duration_s=round(speech.duration_s, 3),
                            audio=base64.b64encode(wav).decode("ascii"),
                        )
                    )
                elif isinstance(item, StreamDoneEvent):
                    meta = item.metadata
                    logged = {"status_code": 200, "mode": "stream", **meta.model_dump()}
                    logger.info("dialogue served", extra=logged)
                    self._served(meta.input_language, "stream", meta.total_ms, meta.time_to_first_audio_ms)
                    yield ndjson_line(item)
        except Exception as error:
            # After the first byte the status is sent: the stream ends with a typed error event instead.
            refused = self._refuse(error, request_id, started, "stream")
            yield ndjson_line(StreamErrorEvent.model_validate_json(bytes(refused.body)))
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    def _served(self, language: str, mode: str, total_ms: float, first_audio_ms: float) -> None:
        tags = {"language": language_tag(language), "mode": mode}
        self._meter.record(DIALOGUE_LATENCY, total_ms, tags)
        self._meter.record(TIME_TO_FIRST_AUDIO, first_audio_ms, tags)
        self._meter.record(DIALOGUES, 1.0, {**tags, "outcome": "served", "error_code": "none"})

    def _refuse(self, error: Exception, request_id: str, started: float, mode: str) -> JSONResponse:
        """Log, count and answer a failed dialogue with the JSON contract (a 500 for unexpected errors)."""
        if not isinstance(error, OrchestratorError):
            # The traceback goes to the log only, never to the client.
            logger.error(
                "dialogue failed",
                exc_info=error,
                extra={"request_id": request_id, "error_code": OrchestratorErrorCode.INTERNAL_ERROR.value},
            )
            error = OrchestratorError(OrchestratorErrorCode.INTERNAL_ERROR, "An internal error occurred.")
        logger.log(
            logging.WARNING if error.http_status < 500 else logging.ERROR,
            "dialogue refused: %s",
            error.message,
            extra={
                "request_id": request_id,
                "error_code": error.code.value,
                "status_code": error.http_status,
                "mode": mode,
                "duration_ms": round((time.perf_counter() - started) * 1000.0, 1),
            },
        )
        self._meter.record(
            DIALOGUES,
            1.0,
            {
                "outcome": outcome_of(error.code),
                "error_code": error.code.value,
                "language": "unknown",
                "mode": mode,
            },
        )
        return error_response(error, request_id)
