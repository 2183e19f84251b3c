"""What every `/v1` request goes through, as the dialogue routes do: the gate (the API key, the body read
under the upload limits *before* a dialogue slot is taken — a transcription or a synthesis is a stage's work),
one log line and the metrics; an error becomes OpenAI's error shape with the status of the one error table."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from voice_orchestrator.api.errors import error_body, error_response, request_id_of
from voice_orchestrator.api.gate import Admission, Gate, logged_refusal
from voice_orchestrator.api.openai.catalog import Catalog, ModelCatalog
from voice_orchestrator.api.uploads import UploadLimits, limited_request
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode, openai_error
from voice_orchestrator.metrics import OPENAI_LATENCY, OPENAI_REQUESTS, Meter, outcome_of
from voice_orchestrator.settings import IngressSettings
from voice_orchestrator.turn import TurnCore

logger = logging.getLogger("voice_orchestrator.api.openai")

ModelT = TypeVar("ModelT", bound=BaseModel)


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


class Visit:
    """One /v1 request at the gate: its id, and the dialogue slot its handler takes once the body is read."""

    def __init__(self, gate: Gate, request_id: str) -> None:
        self._gate = gate
        self.request_id = request_id
        self.admission: Admission | None = None

    def admit(self) -> None:
        if self.admission is None:
            self.admission = self._gate.admit()

    def leave(self) -> None:
        if self.admission is not None:
            self.admission.release()


Handler = Callable[[Visit], Awaitable[Response]]


class OpenAIGateway:
    def __init__(self, gate: Gate, core: TurnCore, meter: Meter, catalog: ModelCatalog) -> None:
        self.gate = gate
        self.core = core
        self._meter = meter
        self._catalog = catalog

    @property
    def settings(self) -> IngressSettings:
        return self.gate.settings

    async def catalog(self) -> Catalog:
        return await self._catalog.get()

    async def read_json(self, request: Request, model: type[ModelT]) -> ModelT:
        """The JSON body as `model`, read through the gate; a bad one is a 400 naming the field."""

        async def read(limited: Request, limits: UploadLimits) -> bytes:
            return await limited_request(limited, limits).body()

        body = await self.gate.read(request, read)
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

    async def handle(self, request: Request, route: str, handler: Handler) -> Response:
        """Authorise, run `handler(visit)` (which reads the body, then `visit.admit()`s when it runs a model);
        a streamed response keeps its slot until its last byte. Any error is answered in OpenAI's shape."""
        visit = Visit(self.gate, request_id_of(request))
        started = time.perf_counter()
        try:
            self.gate.authorize(request.headers)
            try:
                response = await handler(visit)
            except BaseException:
                visit.leave()
                raise
        except Exception as error:
            return self.refuse(error, visit.request_id, route, started)
        if isinstance(response, StreamingResponse):
            sse = (response.media_type or "").startswith("text/event-stream")
            response.body_iterator = self._held(response.body_iterator, sse, route, visit, started)
            return response
        visit.leave()
        self._served(route, visit.request_id, started)
        return response

    async def _held(
        self,
        body: AsyncIterable[str | bytes | memoryview],
        sse: bool,
        route: str,
        visit: Visit,
        started: float,
    ) -> AsyncIterator[bytes]:
        """The stream's bytes; an error after the first byte ends an SSE stream with OpenAI's error event
        (`data: {"error": ...}`) and cuts a raw audio stream (its status is sent already)."""
        try:
            async for chunk in body:
                yield chunk.encode() if isinstance(chunk, str) else bytes(chunk)
        except Exception as error:
            refused = self._logged(error, visit.request_id, route, started)
            if not sse:
                raise
            status = refused.http_status
            yield sse_data(openai_error(refused.code.value, refused.message, refused.details, status))
        else:
            self._served(route, visit.request_id, started)
        finally:
            visit.leave()
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
