"""The HTTP edge: Serve's proxy held to the API's error contract, in the proxy process itself.

Serve's proxy decodes some request headers with `.decode()` before any application code runs, copies
`X-Request-ID` into responses and logs whatever its length, obeys a few of its own control headers from any
client, and answers replica loss, timeouts, backpressure and unknown routes in plain text. `EdgeMiddleware`
wraps the proxy (Serve's supported hook, `RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`, names
`proxy_middlewares`) and:

- refuses headers that are not UTF-8 or are absurdly long with a JSON 400 before the proxy reads them;
- keeps `X-Request-ID` only when it is 1-128 visible ASCII characters, otherwise replaces it with a fresh id;
- drops the headers that steer Serve itself (per-request timeout, disconnect policy, model multiplexing);
- turns every error response that is not already JSON into the error body, with `Retry-After` where a retry
  helps, and ends a stream whose server died mid-way with a typed error event;
- answers a WebSocket upgrade on a path that has no socket with the JSON 404 (an HTTP denial response).

It is pure ASGI: responses that pass (every 2xx/3xx, every JSON error) are forwarded message by message, so
streams are never buffered. `install_json_parser_errors` makes uvicorn's own 400 for unparsable HTTP JSON too.
No Ray import: the module is loaded inside Serve's proxy actor and is unit-tested with plain ASGI apps.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voice_orchestrator.errors import (
    HTTP_STATUS,
    RETRYABLE,
    OrchestratorErrorCode,
    is_openai_path,
    openai_error,
)

logger = logging.getLogger("ray.serve")

# What the profiles put in the Serve controller's env_vars (`controller_options`); every proxy inherits it.
CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
CALLBACK_PATH = "voice_orchestrator.edge.proxy_middlewares"

MAX_HEADER_BYTES = 8 * 1024
MAX_TOTAL_HEADER_BYTES = 64 * 1024
MAX_REQUEST_ID_CHARS = 128
# With a second ingress replica a retry is served at once; without, it waits in the proxy for the replacement.
DEFAULT_RETRY_AFTER_S = 2

REQUEST_ID_HEADER = b"x-request-id"
# Instructions to Serve's proxy and router, meant for an operator's load balancer, never for clients:
# `x-request-timeout-seconds: 0` would switch `request_timeout_s` off for that request.
SERVE_CONTROL_HEADERS = frozenset(
    {
        b"x-request-timeout-seconds",
        b"x-request-disconnect-disabled",
        b"serve_multiplexed_model_id",
        b"serve-multiplexed-model-id",
    }
)
SERVE_CONTROL_PREFIX = b"x-serve-router-"

JSON_TYPES = (b"application/json", b"application/x-ndjson")
NDJSON_TYPE = b"application/x-ndjson"

# Error statuses that reach the edge without a JSON body, and the code each stands for.
CODE_OF_STATUS: dict[int, OrchestratorErrorCode] = {
    400: OrchestratorErrorCode.INVALID_REQUEST,
    401: OrchestratorErrorCode.UNAUTHORIZED,
    404: OrchestratorErrorCode.NOT_FOUND,
    405: OrchestratorErrorCode.METHOD_NOT_ALLOWED,
    413: OrchestratorErrorCode.PAYLOAD_TOO_LARGE,
    429: OrchestratorErrorCode.TOO_MANY_REQUESTS,
    500: OrchestratorErrorCode.INTERNAL_ERROR,
    503: OrchestratorErrorCode.SERVICE_UNAVAILABLE,
    504: OrchestratorErrorCode.PROCESSING_TIMEOUT,
}

MESSAGES: dict[OrchestratorErrorCode, str] = {
    OrchestratorErrorCode.INVALID_REQUEST: "The request was refused as malformed.",
    OrchestratorErrorCode.UNAUTHORIZED: "The request is not authorized.",
    OrchestratorErrorCode.NOT_FOUND: "No route matches this path.",
    OrchestratorErrorCode.METHOD_NOT_ALLOWED: "This route does not accept this method.",
    OrchestratorErrorCode.PAYLOAD_TOO_LARGE: "The request body is too large.",
    OrchestratorErrorCode.UPLOAD_TIMEOUT: "The request body did not arrive within the server's time limit.",
    OrchestratorErrorCode.TOO_MANY_REQUESTS: "The server is at capacity; retry after the delay.",
    OrchestratorErrorCode.SERVICE_UNAVAILABLE: (
        "The server could not complete the request (a server replica stopped or is not ready); "
        "retry after the delay."
    ),
    OrchestratorErrorCode.PROCESSING_TIMEOUT: "The request did not finish within the server's time limit.",
    OrchestratorErrorCode.INTERNAL_ERROR: "Internal server error.",
}


STREAM_CUT_MESSAGE = (
    "The server ended this stream early (a server replica stopped, or the request reached the server's "
    "time limit); retry after the delay."
)


# The paths that accept a WebSocket upgrade; any other upgrade gets the JSON 404.
WEBSOCKET_ROUTES: frozenset[str] = frozenset({"/v1/realtime"})
# Serve's `request_timeout_s` bounds a socket as it bounds a request (a realtime session would be cut after
# 3 minutes). The app bounds its sockets itself (`realtime_max_session_seconds`, the idle timeout), so the
# edge switches the proxy's timeout off for them: a non-positive value of Serve's per-request header.
NO_PROXY_TIMEOUT = (b"x-request-timeout-seconds", b"0")


def new_request_id() -> str:
    return uuid.uuid4().hex


def proxy_middlewares() -> list[Middleware]:
    """Serve's proxy callback (`RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`): runs once per proxy process."""
    install_json_parser_errors()
    return [Middleware(EdgeMiddleware)]


# --- the error body -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EdgeError:
    code: OrchestratorErrorCode
    message: str
    request_id: str
    details: dict[str, Any] | None = None
    retry_after: int | None = None
    status: int | None = None  # None: the code's status in the one table
    openai: bool = False  # a `/v1` route: OpenAI's error shape

    @property
    def http_status(self) -> int:
        return self.status if self.status is not None else HTTP_STATUS[self.code]

    def body(self) -> dict[str, Any]:
        if self.openai:
            return openai_error(self.code.value, self.message, self.details, self.http_status)
        # The fields of voice_orchestrator.protocol.ErrorBody, without importing pydantic models here.
        return {
            "error_code": self.code.value,
            "message": self.message,
            "details": self.details,
            "retry_after": self.retry_after,
            "request_id": self.request_id,
        }

    def json_bytes(self) -> bytes:
        return json.dumps(self.body(), separators=(",", ":")).encode()

    def stream_event(self) -> bytes:
        """The NDJSON line that ends a stream (voice_orchestrator.protocol.StreamErrorEvent)."""
        return json.dumps({"type": "error", **self.body()}, separators=(",", ":")).encode() + b"\n"

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (REQUEST_ID_HEADER, self.request_id.encode()),
        ]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


def error_of_status(
    status: int, request_id: str, *, body_complete: bool, retry_after: int | None
) -> EdgeError:
    """The error body for a non-JSON error response of the proxy (or of any app behind it)."""
    if status == 408:
        # Serve's `request_timeout_s` fired. The client's fault only while its upload was still arriving.
        code = (
            OrchestratorErrorCode.PROCESSING_TIMEOUT
            if body_complete
            else OrchestratorErrorCode.UPLOAD_TIMEOUT
        )
        return EdgeError(code, MESSAGES[code], request_id)
    known = CODE_OF_STATUS.get(status)
    if known is None:
        # A status outside the table: keep it, with the nearest code.
        code = OrchestratorErrorCode.INVALID_REQUEST if status < 500 else OrchestratorErrorCode.INTERNAL_ERROR
        return EdgeError(code, f"The request failed with HTTP {status}.", request_id, status=status)
    if known in RETRYABLE:
        return EdgeError(known, MESSAGES[known], request_id, retry_after=retry_after or DEFAULT_RETRY_AFTER_S)
    return EdgeError(known, MESSAGES[known], request_id)


# --- request headers ------------------------------------------------------------------------------------


def valid_request_id(value: bytes) -> bool:
    """1-128 visible ASCII characters: safe to echo in a header, a log line and a JSON body."""
    return 0 < len(value) <= MAX_REQUEST_ID_CHARS and all(0x21 <= byte <= 0x7E for byte in value)


@dataclass(frozen=True)
class ScreenedHeaders:
    headers: list[tuple[bytes, bytes]]
    request_id: str
    problem: EdgeError | None = None


def _shown(name: bytes) -> str:
    return name[:64].decode("ascii", "replace")


def screen_headers(
    raw: Iterable[tuple[bytes, bytes]],
    *,
    max_header_bytes: int = MAX_HEADER_BYTES,
    max_total_bytes: int = MAX_TOTAL_HEADER_BYTES,
) -> ScreenedHeaders:
    """The request's headers as the proxy may read them: one capped X-Request-ID, no Serve control headers;
    or the reason to refuse the request (a header that is not UTF-8, too long, or too many bytes in all)."""
    given = list(raw)
    request_id = next((value for name, value in given if name.lower() == REQUEST_ID_HEADER), b"")
    rid = request_id.decode("ascii") if valid_request_id(request_id) else new_request_id()

    def refuse(reason: str, name: bytes | None) -> ScreenedHeaders:
        details: dict[str, Any] = {"reason": reason}
        if name is not None:
            details["header"] = _shown(name)
        message = f"Request headers refused: {reason}."
        error = EdgeError(OrchestratorErrorCode.INVALID_REQUEST, message, rid, details=details)
        return ScreenedHeaders(given, rid, error)

    total = 0
    kept: list[tuple[bytes, bytes]] = []
    for name, value in given:
        total += len(name) + len(value)
        if len(value) > max_header_bytes:
            return refuse(f"a header value is longer than {max_header_bytes} bytes", name)
        try:
            name.decode("ascii")
            value.decode("utf-8")
        except UnicodeDecodeError:
            return refuse("a header is not valid UTF-8", name)
        lowered = name.lower()
        if lowered == REQUEST_ID_HEADER or lowered in SERVE_CONTROL_HEADERS:
            continue
        if lowered.startswith(SERVE_CONTROL_PREFIX):
            continue
        kept.append((name, value))
    if total > max_total_bytes:
        return refuse(f"the headers are longer than {max_total_bytes} bytes in all", None)
    kept.append((REQUEST_ID_HEADER, rid.encode()))
    return ScreenedHeaders(kept, rid)


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> bytes | None:
    return next((value for name, value in headers if name.lower() == wanted), None)


def _is_json(content_type: bytes | None) -> bool:
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith(b"application/") and media.endswith(b"+json"))


def _retry_after(headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"retry-after")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


# --- the middleware -------------------------------------------------------------------------------------


class EdgeMiddleware:
    """Pure ASGI: screens request headers, rewrites non-JSON error responses, forwards everything else."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_total_header_bytes: int = MAX_TOTAL_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes
        self.max_total_header_bytes = max_total_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        screened = screen_headers(
            scope["headers"],
            max_header_bytes=self.max_header_bytes,
            max_total_bytes=self.max_total_header_bytes,
        )
        if screened.problem is not None:
            logger.info("edge: refused request %s: %s", screened.request_id, screened.problem.message)
            await _refuse(
                scope, send, replace(screened.problem, openai=is_openai_path(scope.get("path", "")))
            )
            return
        scope = {**scope, "headers": screened.headers}
        if scope["type"] == "websocket":
            path = scope.get("path", "")
            if path not in WEBSOCKET_ROUTES:  # else uvicorn answers a plain-text 403 with an empty body
                error = EdgeError(
                    OrchestratorErrorCode.NOT_FOUND,
                    "No WebSocket is served at this path.",
                    screened.request_id,
                    details={"path": path[:200]},
                    openai=is_openai_path(path),
                )
                await _refuse(scope, send, error)
                return
            await self.app({**scope, "headers": [*screened.headers, NO_PROXY_TIMEOUT]}, receive, send)
            return
        exchange = _Exchange(screened.request_id, send, openai=is_openai_path(scope.get("path", "")))
        await exchange.run(self.app, scope, receive)


async def _refuse(scope: Scope, send: Send, error: EdgeError) -> None:
    body = error.json_bytes()
    if scope["type"] == "http":
        await send(
            {"type": "http.response.start", "status": error.http_status, "headers": error.headers(body)}
        )
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": error.http_status,
                "headers": error.headers(body),
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})  # policy violation


class _Exchange:
    """One HTTP request/response through the edge."""

    def __init__(self, request_id: str, send: Send, *, openai: bool = False) -> None:
        self.request_id = request_id
        self._send = send
        self.openai = openai
        self.body_complete = False  # the whole request body arrived
        self.disconnected = False
        self.started = False  # a response start went to the client
        self.completed = False
        self.rewriting: Message | None = None  # a held non-JSON error response start
        self.streaming_ndjson = False

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive) -> None:
        async def edge_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.body_complete = True
            elif message["type"] == "http.disconnect":
                self.disconnected = True
            return message

        try:
            await app(scope, edge_receive, self.send)
        except Exception:
            # A fault of the proxy itself; once a plain response has started it can only be cut.
            logger.exception("edge: the proxy failed on request %s", self.request_id)
            if not await self._finish(OrchestratorErrorCode.INTERNAL_ERROR):
                raise
            return
        # Serve's proxy answers nothing when the replica died or failed before answering (its status 500):
        # the request can be retried against a live replica.
        await self._finish(OrchestratorErrorCode.SERVICE_UNAVAILABLE)

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            headers = message.get("headers", [])
            if message["status"] >= 400 and not _is_json(_header(headers, b"content-type")):
                self.rewriting = message
                return
            content_type = _header(headers, b"content-type") or b""
            self.streaming_ndjson = content_type.split(b";", 1)[0].strip().lower() == NDJSON_TYPE
            self.started = True
        elif kind == "http.response.body":
            if self.rewriting is not None:
                if not message.get("more_body", False):
                    await self._send_rewritten()
                return
            if not message.get("more_body", False):
                self.completed = True
        elif self.rewriting is not None:
            return  # trailers of a response being replaced
        await self._send(message)

    async def _send_rewritten(self) -> None:
        held = self.rewriting
        assert held is not None
        original = held.get("headers", [])
        error = error_of_status(
            held["status"],
            self.request_id,
            body_complete=self.body_complete,
            retry_after=_retry_after(original),
        )
        self.rewriting = None
        dropped = {
            b"content-type",
            b"content-length",
            b"retry-after",
            b"transfer-encoding",
            REQUEST_ID_HEADER,
        }
        kept = [(name, value) for name, value in original if name.lower() not in dropped]
        await self._send_error(error, kept)

    async def _send_error(
        self, error: EdgeError, extra_headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        body = replace(error, openai=self.openai).json_bytes()
        headers = (extra_headers or []) + error.headers(body)
        self.started = True
        await self._send({"type": "http.response.start", "status": error.http_status, "headers": headers})
        self.completed = True
        await self._send({"type": "http.response.body", "body": body})

    async def _finish(self, code: OrchestratorErrorCode) -> bool:
        """After the app ended: make sure the client got a whole response. False when that is impossible."""
        if self.completed or self.disconnected:
            return True
        retry_after = DEFAULT_RETRY_AFTER_S if code in RETRYABLE else None
        error = EdgeError(code, MESSAGES[code], self.request_id, retry_after=retry_after)
        if self.rewriting is not None:  # the app stopped in the middle of a plain error body
            await self._send_rewritten()
            return True
        if not self.started:
            await self._send_error(error)
            return True
        if self.streaming_ndjson:
            # The proxy stopped the stream (its replica died, or `request_timeout_s` passed): end it the way
            # the app ends a failed stream, with an error event, rather than with a cut connection.
            cut = EdgeError(
                code,
                STREAM_CUT_MESSAGE if retry_after else error.message,
                self.request_id,
                retry_after=retry_after,
            )
            self.completed = True
            await self._send({"type": "http.response.body", "body": cut.stream_event(), "more_body": False})
            return True
        return False


# --- uvicorn's own refusals -----------------------------------------------------------------------------

_PATCHED: dict[type[Any], Callable[..., None]] = {}


def _json_400_response(protocol: Any, msg: str) -> None:
    """uvicorn's `send_400_response` (the request could not be parsed as HTTP), with the JSON error body."""
    error = EdgeError(
        OrchestratorErrorCode.INVALID_REQUEST,
        "The request is not valid HTTP/1.1 (for example a bare CR or LF in a header, a negative "
        "Content-Length or a malformed request line).",
        new_request_id(),
    )
    body = error.json_bytes()
    lines = [b"HTTP/1.1 400 Bad Request\r\n"]
    for name, value in [
        *protocol.server_state.default_headers,
        *error.headers(body),
        (b"connection", b"close"),
    ]:
        lines.append(name + b": " + value + b"\r\n")
    protocol.transport.write(b"".join(lines) + b"\r\n" + body)
    protocol.transport.close()


def install_json_parser_errors() -> list[str]:
    """Make uvicorn answer unparsable requests with the JSON error body instead of plain text.

    Serve builds uvicorn's `Config` itself and offers no way to choose the protocol class, so this replaces
    `send_400_response` on uvicorn's two HTTP/1.1 protocol classes (httptools, the one Serve gets, and h11).
    Idempotent; a class without that method is left alone (then clients get uvicorn's plain text).
    Returns the names of the classes patched."""
    patched: list[str] = []
    classes: list[type[Any]] = []
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        classes.append(HttpToolsProtocol)
    except ImportError:  # httptools is optional for uvicorn
        pass
    from uvicorn.protocols.http.h11_impl import H11Protocol

    classes.append(H11Protocol)
    for cls in classes:
        original = getattr(cls, "send_400_response", None)
        if original is None:
            continue
        if cls not in _PATCHED:
            _PATCHED[cls] = original

            def send_400_response(self: Any, msg: str, _original: Callable[..., None] = original) -> None:
                try:
                    _json_400_response(self, msg)
                except Exception:  # never worse than uvicorn's own answer
                    logger.exception("edge: JSON 400 failed; uvicorn's plain text instead")
                    _original(self, msg)

            cls.send_400_response = send_400_response
        patched.append(cls.__name__)
    return patched


def uninstall_json_parser_errors() -> None:
    """Undo `install_json_parser_errors` (for tests)."""
    for cls, original in _PATCHED.items():
        cls.send_400_response = original
    _PATCHED.clear()
