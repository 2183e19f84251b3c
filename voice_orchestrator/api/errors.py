"""The one error body of the API, whichever way it leaves: a JSON response or a stream's last event."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from voice_orchestrator.errors import (
    HTTP_STATUS,
    RETRYABLE,
    OrchestratorError,
    OrchestratorErrorCode,
    is_openai_path,
    openai_error,
)
from voice_orchestrator.protocol import ErrorBody

logger = logging.getLogger("voice_orchestrator.api")

# Starlette's own refusals (no such route, wrong method) in the contract's words.
_HTTP_CODES = {404: OrchestratorErrorCode.NOT_FOUND, 405: OrchestratorErrorCode.METHOD_NOT_ALLOWED}


def request_id_of(request: Request) -> str:
    """The request's id. Serve's proxy puts the client's X-Request-ID (or a new id) on every request and
    echoes it as the response's X-Request-ID header, so we reuse it rather than add a second header."""
    existing = getattr(request.state, "request_id", None)
    if isinstance(existing, str):
        return existing
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    request.state.request_id = request_id
    return request_id


def internal_error() -> OrchestratorError:
    return OrchestratorError(OrchestratorErrorCode.INTERNAL_ERROR, "An internal error occurred.")


def error_body(error: OrchestratorError, request_id: str) -> ErrorBody:
    retry_after = error.retry_after
    if retry_after is None and error.code in RETRYABLE:
        retry_after = 1
    return ErrorBody(
        error_code=error.code.value,
        message=error.message,
        details=error.details,
        retry_after=retry_after,
        request_id=request_id,
    )


def error_response(
    body: ErrorBody, headers: dict[str, str] | None = None, *, openai: bool = False
) -> JSONResponse:
    """The error as a response: the contract's body, or OpenAI's shape (`openai`: the `/v1` routes), with the
    same status and `Retry-After`."""
    extra = dict(headers or {})
    if body.retry_after is not None:
        extra["Retry-After"] = str(body.retry_after)
    status = HTTP_STATUS[OrchestratorErrorCode(body.error_code)]
    if openai:
        content = openai_error(body.error_code, body.message, body.details, status)
        return JSONResponse(content, status_code=status, headers=extra)
    return JSONResponse(body.model_dump(), status_code=status, headers=extra)


def route_path(request: Request) -> str:
    """The request's path inside the app (an app served under a route prefix sees it as its root_path)."""
    path, root = request.url.path, str(request.scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def _respond(request: Request, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return error_response(body, headers, openai=is_openai_path(route_path(request)))


def install_error_handlers(app: FastAPI) -> None:
    """Every response of the app is in the contract: our errors, Starlette's 404/405, bad parameters, and
    anything unexpected (a 500 whose traceback goes to the log only)."""

    @app.exception_handler(OrchestratorError)
    async def _ours(request: Request, error: OrchestratorError) -> JSONResponse:
        return _respond(request, error_body(error, request_id_of(request)))

    @app.exception_handler(HTTPException)
    async def _starlette(request: Request, error: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, OrchestratorErrorCode.INVALID_REQUEST)
        message = f"{request.method} {request.url.path[:200]} is not a route of this server."
        if code is OrchestratorErrorCode.METHOD_NOT_ALLOWED:
            message = f"{request.method} is not allowed on {request.url.path[:200]}."
        body = error_body(OrchestratorError(code, message), request_id_of(request))
        return _respond(request, body, dict(error.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        fields = [".".join(str(part) for part in item.get("loc", ())) for item in error.errors()][:5]
        refused = OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST,
            "The request's parameters are invalid.",
            details={"fields": fields},
        )
        return _respond(request, error_body(refused, request_id_of(request)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        request_id = request_id_of(request)
        logger.error(
            "unhandled error",
            exc_info=error,
            extra={"request_id": request_id, "error_code": OrchestratorErrorCode.INTERNAL_ERROR.value},
        )
        return _respond(request, error_body(internal_error(), request_id))


# Errors every route can answer with, whatever it does: a bad request, the API key, no such route or method,
# a body past the limit or too slow, an internal error.
ROUTE_ERRORS = (
    OrchestratorErrorCode.INVALID_REQUEST,
    OrchestratorErrorCode.UNAUTHORIZED,
    OrchestratorErrorCode.NOT_FOUND,
    OrchestratorErrorCode.METHOD_NOT_ALLOWED,
    OrchestratorErrorCode.UPLOAD_TIMEOUT,
    OrchestratorErrorCode.PAYLOAD_TOO_LARGE,
    OrchestratorErrorCode.INTERNAL_ERROR,
)


def openapi_error_responses(
    *codes: OrchestratorErrorCode, body: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error responses, grouped by HTTP status from the one error table; `body`: the
    entry's body when it is not `ErrorBody` (the /v1 routes answer OpenAI's shape)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        status = HTTP_STATUS[code]
        entry = responses.setdefault(status, {**(body or {"model": ErrorBody}), "description": ""})
        entry["description"] = " | ".join(filter(None, [entry["description"], code.value]))
        if code in RETRYABLE:
            entry["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}}
    return responses
