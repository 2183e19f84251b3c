"""The proxy-edge middleware on tiny ASGI apps, and uvicorn's JSON 400 on a real uvicorn server."""

from __future__ import annotations

import asyncio
import importlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
import yaml
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from voice_orchestrator.edge import (
    CALLBACK_ENV,
    CALLBACK_PATH,
    DEFAULT_RETRY_AFTER_S,
    MAX_HEADER_BYTES,
    EdgeMiddleware,
    install_json_parser_errors,
    proxy_middlewares,
    screen_headers,
    uninstall_json_parser_errors,
)
from voice_orchestrator.errors import HTTP_STATUS, OrchestratorErrorCode
from voice_orchestrator.protocol import ErrorBody, StreamErrorEvent

Headers = list[tuple[bytes, bytes]]


def http_scope(headers: Headers | None = None, method: str = "GET") -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": "/api/orchestrator/status",
        "raw_path": b"/api/orchestrator/status",
        "query_string": b"",
        "root_path": "",
        "scheme": "http",
        "headers": headers or [(b"host", b"test")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }


class Recorder:
    """Calls an ASGI app and records what it sends; `on_send` lets a test react to each message."""

    def __init__(self, body: list[bytes] | None = None, disconnect: bool = False) -> None:
        self.sent: list[Message] = []
        self.seen_scope: Scope | None = None
        self._body = list(body or [b""])
        self._disconnect = disconnect
        self.on_send: Callable[[Message], Awaitable[None]] | None = None

    async def receive(self) -> Message:
        if self._body:
            chunk = self._body.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self._body)}
        if self._disconnect:
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # a client still connected, waiting for the response
        raise AssertionError("unreachable")

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if self.on_send is not None:
            await self.on_send(message)

    async def call(self, app: ASGIApp, scope: Scope) -> None:
        await asyncio.wait_for(app(scope, self.receive, self.send), timeout=5)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return {name.lower(): value for name, value in self.sent[0]["headers"]}

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    def error(self) -> ErrorBody:
        assert self.headers[b"content-type"] == b"application/json"
        assert self.headers[b"content-length"] == str(len(self.body)).encode()
        assert self.sent[-1].get("more_body", False) is False
        error = ErrorBody.model_validate_json(self.body)
        assert self.headers[b"x-request-id"] == error.request_id.encode()
        if error.retry_after is not None:
            assert self.headers[b"retry-after"] == str(error.retry_after).encode()
        else:
            assert b"retry-after" not in self.headers
        return error


def plain(status: int, text: bytes = b"proxy says no", extra: Headers | None = None) -> ASGIApp:
    """An app answering like Serve's proxy does for its own errors: plain text."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/plain; charset=utf-8"), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text})

    return app


def reading_body_then(inner: ASGIApp) -> ASGIApp:
    """Reads the request body as Serve's proxy does (all of it, as it arrives) before answering."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if not message.get("more_body", False):
                break
        await inner(scope, receive, send)

    return app


def reading_one_chunk_then(inner: ASGIApp) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await inner(scope, receive, send)

    return app


class SeenScope:
    def __init__(self) -> None:
        self.scope: Scope | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        body = json.dumps({"ok": True}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


# --- request headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", [b"x-request-id", b"x-session-id", b"serve_multiplexed_model_id", b"traceparent", b"user-agent"]
)
async def test_a_header_that_is_not_utf8_gets_a_json_400_before_the_app(name: bytes) -> None:
    app = SeenScope()
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(app), http_scope([(b"host", b"t"), (name, b"caf\xe9 \xff")]))
    assert app.scope is None
    assert recorder.status == 400
    error = recorder.error()
    assert error.error_code == OrchestratorErrorCode.INVALID_REQUEST
    assert error.details == {"reason": "a header is not valid UTF-8", "header": name.decode()}
    assert len(error.request_id) == 32  # a fresh id: the given one could not be used


async def test_a_valid_request_id_is_kept_in_the_error_body_of_a_refused_request() -> None:
    recorder = Recorder()
    headers = [(b"x-request-id", b"client-42"), (b"x-session-id", b"\xff")]
    await recorder.call(EdgeMiddleware(SeenScope()), http_scope(headers))
    assert recorder.error().request_id == "client-42"


async def test_a_header_longer_than_8_kib_gets_a_json_400() -> None:
    recorder = Recorder()
    huge = b"a" * (MAX_HEADER_BYTES + 1)
    await recorder.call(EdgeMiddleware(SeenScope()), http_scope([(b"x-request-id", huge)]))
    assert recorder.status == 400
    error = recorder.error()
    assert error.details is not None
    assert error.details["header"] == "x-request-id"
    assert len(recorder.body) < 400  # the 8 KiB id is not copied back


async def test_too_many_header_bytes_in_all_get_a_json_400() -> None:
    recorder = Recorder()
    headers = [(f"x-filler-{i}".encode(), b"v" * 4000) for i in range(20)]  # 80 KB, each header small
    await recorder.call(EdgeMiddleware(SeenScope()), http_scope(headers))
    assert recorder.status == 400
    assert "in all" in recorder.error().message


async def test_a_header_of_exactly_the_limit_passes() -> None:
    app = SeenScope()
    recorder = Recorder()
    await recorder.call(
        EdgeMiddleware(app), http_scope([(b"x-note", "é".encode() * (MAX_HEADER_BYTES // 2))])
    )
    assert recorder.status == 200
    assert app.scope is not None


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (b"abc-123_XYZ.:/+=", True),
        (b"a" * 128, True),
        (b"a" * 129, False),
        (b"has space", False),
        ("café".encode(), False),  # valid UTF-8, not ASCII
        (b"tab\there", False),
        (b"", False),
    ],
)
async def test_request_ids_are_capped_to_128_visible_ascii_characters(given: bytes, kept: bool) -> None:
    app = SeenScope()
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(app), http_scope([(b"host", b"t"), (b"X-Request-ID", given)]))
    assert app.scope is not None
    ids = [value for name, value in app.scope["headers"] if name.lower() == b"x-request-id"]
    assert len(ids) == 1
    if kept:
        assert ids == [given]
    else:
        assert len(ids[0]) == 32
        assert ids[0] != given


def test_a_missing_or_repeated_request_id_becomes_exactly_one() -> None:
    assert next(v for n, v in screen_headers([(b"host", b"t")]).headers if n == b"x-request-id")
    twice = screen_headers([(b"x-request-id", b"first"), (b"x-request-id", b"second")])
    assert [v for n, v in twice.headers if n == b"x-request-id"] == [b"first"]
    assert twice.request_id == "first"


async def test_headers_that_steer_serve_are_dropped() -> None:
    app = SeenScope()
    headers = [
        (b"x-request-timeout-seconds", b"0"),  # would switch request_timeout_s off
        (b"x-request-disconnect-disabled", b"?1"),
        (b"serve_multiplexed_model_id", b"m"),
        (b"serve-multiplexed-model-id", b"m"),
        (b"x-serve-router-target", b"r"),
        (b"x-session-id", b"conversation-1"),
        (b"accept", b"*/*"),
    ]
    await Recorder().call(EdgeMiddleware(app), http_scope(headers))
    assert app.scope is not None
    names = [name for name, _ in app.scope["headers"]]
    assert names == [b"x-session-id", b"accept", b"x-request-id"]


async def test_websocket_with_a_bad_header_is_denied() -> None:
    scope = {**http_scope([(b"x-request-id", b"\xff")]), "type": "websocket"}
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(SeenScope()), scope)
    assert recorder.sent == [{"type": "websocket.close", "code": 1008}]

    scope["extensions"] = {"websocket.http.response": {}}
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(SeenScope()), scope)
    assert recorder.sent[0]["type"] == "websocket.http.response.start"
    assert recorder.sent[0]["status"] == 400
    assert ErrorBody.model_validate_json(recorder.sent[1]["body"]).error_code == "INVALID_REQUEST"


async def test_lifespan_passes_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    await EdgeMiddleware(app)({"type": "lifespan"}, Recorder().receive, Recorder().send)
    assert seen == ["lifespan"]


# --- responses ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "retry_after"),
    [
        (404, OrchestratorErrorCode.NOT_FOUND, None),  # no application route
        (405, OrchestratorErrorCode.METHOD_NOT_ALLOWED, None),
        (413, OrchestratorErrorCode.PAYLOAD_TOO_LARGE, None),
        (500, OrchestratorErrorCode.INTERNAL_ERROR, None),
        (503, OrchestratorErrorCode.SERVICE_UNAVAILABLE, DEFAULT_RETRY_AFTER_S),  # no replica / app deploying
        (504, OrchestratorErrorCode.PROCESSING_TIMEOUT, None),
    ],
)
async def test_plain_error_responses_become_the_json_contract(
    status: int, code: OrchestratorErrorCode, retry_after: int | None
) -> None:
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(plain(status)), http_scope([(b"x-request-id", b"rid-1")]))
    assert recorder.status == HTTP_STATUS[code] == status
    error = recorder.error()
    assert (error.error_code, error.retry_after, error.request_id) == (code, retry_after, "rid-1")
    assert b"proxy says no" not in recorder.body


async def test_backpressure_429_keeps_the_proxys_retry_after() -> None:
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(plain(429, extra=[(b"retry-after", b"5")])), http_scope())
    assert recorder.status == 429
    error = recorder.error()
    assert (error.error_code, error.retry_after) == ("TOO_MANY_REQUESTS", 5)


async def test_request_timeout_after_the_upload_is_a_processing_timeout() -> None:
    recorder = Recorder(body=[b"part one", b"part two"])
    await recorder.call(EdgeMiddleware(reading_body_then(plain(408))), http_scope(method="POST"))
    assert recorder.status == 504
    assert recorder.error().error_code == "PROCESSING_TIMEOUT"


async def test_request_timeout_while_the_upload_trickles_is_an_upload_timeout() -> None:
    recorder = Recorder(body=[b"part one", b"part two"])
    await recorder.call(EdgeMiddleware(reading_one_chunk_then(plain(408))), http_scope(method="POST"))
    assert recorder.status == 408
    assert recorder.error().error_code == "UPLOAD_TIMEOUT"


async def test_a_status_outside_the_table_keeps_its_status() -> None:
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(plain(418)), http_scope())
    assert recorder.status == 418
    assert recorder.error().error_code == "INVALID_REQUEST"


async def test_other_headers_of_a_rewritten_response_are_kept() -> None:
    recorder = Recorder()
    app = plain(503, extra=[(b"access-control-allow-origin", b"*"), (b"x-request-id", b"rid-2")])
    await recorder.call(EdgeMiddleware(app), http_scope([(b"x-request-id", b"rid-2")]))
    assert recorder.headers[b"access-control-allow-origin"] == b"*"
    assert [value for name, value in recorder.sent[0]["headers"] if name == b"x-request-id"] == [b"rid-2"]


@pytest.mark.parametrize(
    "content_type", [b"application/json", b"application/json; charset=utf-8", b"application/problem+json"]
)
async def test_json_error_responses_pass_untouched(content_type: bytes) -> None:
    start = {"type": "http.response.start", "status": 429, "headers": [(b"content-type", content_type)]}
    body = {"type": "http.response.body", "body": b'{"error_code":"TOO_MANY_REQUESTS"}'}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(dict(start))
        await send(dict(body))

    recorder = Recorder()
    await recorder.call(EdgeMiddleware(app), http_scope())
    assert recorder.sent == [start, body]


async def test_successful_plain_responses_pass_untouched() -> None:
    recorder = Recorder()
    await recorder.call(EdgeMiddleware(plain(200, b"success")), http_scope())
    assert (recorder.status, recorder.body) == (200, b"success")


async def test_no_answer_from_the_proxy_is_a_json_503_with_retry_after() -> None:
    async def replica_died(scope: Scope, receive: Receive, send: Send) -> None:
        return  # what Serve's proxy does when the replica dies before answering

    recorder = Recorder()
    await recorder.call(EdgeMiddleware(replica_died), http_scope([(b"x-request-id", b"rid-3")]))
    assert recorder.status == 503
    error = recorder.error()
    assert (error.error_code, error.retry_after, error.request_id) == (
        "SERVICE_UNAVAILABLE",
        DEFAULT_RETRY_AFTER_S,
        "rid-3",
    )


async def test_a_proxy_failure_before_the_response_is_a_json_500() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("proxy bug")

    recorder = Recorder()
    await recorder.call(EdgeMiddleware(broken), http_scope())
    assert recorder.status == 500
    assert recorder.error().error_code == "INTERNAL_ERROR"


async def test_nothing_is_sent_to_a_client_that_left() -> None:
    async def client_left(scope: Scope, receive: Receive, send: Send) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    recorder = Recorder(disconnect=True)
    await recorder.call(EdgeMiddleware(client_left), http_scope())
    assert recorder.sent == []


# --- streams --------------------------------------------------------------------------------------------


def ndjson_app(events: int, then: str = "end") -> tuple[ASGIApp, list[asyncio.Event]]:
    """Streams `events` NDJSON lines; each line waits until the client has received the previous one,
    so a middleware that buffered the stream would deadlock. `then`: end | stop (the proxy gives up
    without finishing) | raise."""
    delivered = [asyncio.Event() for _ in range(events)]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/x-ndjson")],
            }
        )
        for index in range(events):
            if index:
                await asyncio.wait_for(delivered[index - 1].wait(), timeout=2)
            line = json.dumps({"type": "audio", "index": index}).encode() + b"\n"
            last = index == events - 1 and then == "end"
            await send({"type": "http.response.body", "body": line, "more_body": not last})
        if then == "raise":
            raise RuntimeError("proxy bug mid-stream")

    return app, delivered


def count_delivered(recorder: Recorder, delivered: list[asyncio.Event]) -> None:
    async def on_send(message: Message) -> None:
        if message["type"] == "http.response.body" and message["body"]:
            index = json.loads(message["body"]).get("index")
            if index is not None:
                delivered[index].set()

    recorder.on_send = on_send


async def test_a_stream_passes_event_by_event() -> None:
    app, delivered = ndjson_app(4)
    recorder = Recorder()
    count_delivered(recorder, delivered)
    await recorder.call(EdgeMiddleware(app), http_scope(method="POST"))
    assert [json.loads(line)["index"] for line in recorder.body.splitlines()] == [0, 1, 2, 3]
    assert recorder.sent[-1]["more_body"] is False


@pytest.mark.parametrize("then", ["stop", "raise"])
async def test_a_stream_cut_by_the_proxy_ends_with_a_typed_error_event(then: str) -> None:
    app, delivered = ndjson_app(3, then=then)
    recorder = Recorder()
    count_delivered(recorder, delivered)
    await recorder.call(EdgeMiddleware(app), http_scope([(b"x-request-id", b"rid-4")], method="POST"))
    lines = recorder.body.splitlines()
    assert [json.loads(line)["index"] for line in lines[:3]] == [0, 1, 2]
    event = StreamErrorEvent.model_validate_json(lines[3])
    assert event.request_id == "rid-4"
    expected = "SERVICE_UNAVAILABLE" if then == "stop" else "INTERNAL_ERROR"
    assert event.error_code == expected
    assert recorder.sent[-1]["more_body"] is False


async def test_a_cut_response_that_is_not_a_stream_of_events_is_left_to_the_server() -> None:
    async def cut_wav(scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"audio/wav")]}
        )
        await send({"type": "http.response.body", "body": b"RIFF", "more_body": True})

    recorder = Recorder()
    await recorder.call(EdgeMiddleware(cut_wav), http_scope())
    assert recorder.body == b"RIFF"  # uvicorn closes the connection: nothing can be appended to a WAV

    async def cut_wav_raising(scope: Scope, receive: Receive, send: Send) -> None:
        await cut_wav(scope, receive, send)
        raise RuntimeError("proxy bug")

    with pytest.raises(RuntimeError):
        await Recorder().call(EdgeMiddleware(cut_wav_raising), http_scope())


@pytest.mark.parametrize(
    "profile", ["serve_config.yaml", "cluster/serve_config.gpu.yaml"], ids=["embedded", "gpu"]
)
def test_the_profiles_enable_the_edge_in_every_proxy(profile: str) -> None:
    config = yaml.safe_load((Path(__file__).parents[2] / profile).read_text())
    assert config["controller_options"]["runtime_env"]["env_vars"] == {CALLBACK_ENV: CALLBACK_PATH}
    module, _, name = CALLBACK_PATH.rpartition(".")
    assert getattr(importlib.import_module(module), name) is proxy_middlewares


def test_the_callback_returns_the_middleware_and_patches_uvicorn() -> None:
    try:
        middlewares = proxy_middlewares()
        assert len(middlewares) == 1
        assert isinstance(middlewares[0], Middleware)
        assert middlewares[0].cls is EdgeMiddleware  # type: ignore[comparison-overlap]
        assert install_json_parser_errors() == ["HttpToolsProtocol", "H11Protocol"]  # idempotent
    finally:
        uninstall_json_parser_errors()


# --- uvicorn's own refusals, on a real uvicorn ----------------------------------------------------------


@asynccontextmanager
async def uvicorn_server(app: ASGIApp, http: str) -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=http, lifespan="off", log_level="critical", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(200):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=5)


async def raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), timeout=5)  # until the server closes
    writer.close()
    return data


MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: t\r\nX-Note: a\rb\r\n\r\n",  # bare CR in a header
    b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
    b"NOT AN HTTP REQUEST\r\n\r\n",
]


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("request_bytes", MALFORMED, ids=["bare-cr", "negative-length", "request-line"])
async def test_unparsable_requests_get_a_json_400_and_the_server_keeps_serving(
    http: str, request_bytes: bytes
) -> None:
    install_json_parser_errors()
    try:
        async with uvicorn_server(EdgeMiddleware(SeenScope()), http) as port:
            answer = await raw_exchange(port, request_bytes)
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 400 ")
            assert b"content-type: application/json" in head.lower()
            error = ErrorBody.model_validate_json(body)
            assert error.error_code == "INVALID_REQUEST"
            assert f"x-request-id: {error.request_id}".encode() in head.lower()
            ok = await raw_exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert ok.startswith(b"HTTP/1.1 200 ")
    finally:
        uninstall_json_parser_errors()


async def test_without_the_patch_uvicorn_answers_plain_text() -> None:
    async with uvicorn_server(EdgeMiddleware(SeenScope()), "httptools") as port:
        answer = await raw_exchange(port, MALFORMED[0])
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert answer.endswith(b"Invalid HTTP request received.")


@pytest.mark.parametrize(("path", "openai"), [("/v1/models", True), ("/api/orchestrator/status", False)])
async def test_a_websocket_upgrade_without_a_socket_gets_the_json_404(path: str, openai: bool) -> None:
    scope = {**http_scope([]), "type": "websocket", "path": path}
    scope["extensions"] = {"websocket.http.response": {}}
    recorder = Recorder()
    app = SeenScope()
    await recorder.call(EdgeMiddleware(app), scope)
    assert app.scope is None  # never reached the app (nor uvicorn's empty 403)
    assert recorder.sent[0]["type"] == "websocket.http.response.start"
    assert recorder.sent[0]["status"] == 404
    body = json.loads(recorder.sent[1]["body"])
    code = body["error"]["code"] if openai else body["error_code"]
    assert code == "NOT_FOUND"


async def test_the_realtime_socket_passes_without_the_proxys_request_timeout() -> None:
    # Serve's `request_timeout_s` would cut a session after 3 minutes; the app bounds its sockets itself. A
    # client's own timeout header is dropped, and the edge's "0" (no timeout) is the only one that reaches
    # the proxy.
    headers = [(b"x-request-timeout-seconds", b"2"), (b"authorization", b"Bearer k")]
    scope = {**http_scope(headers), "type": "websocket", "path": "/v1/realtime"}
    recorder = Recorder()
    app = SeenScope()
    await recorder.call(EdgeMiddleware(app), scope)
    assert app.scope is not None
    passed = app.scope["headers"]
    assert [value for name, value in passed if name == b"x-request-timeout-seconds"] == [b"0"]
    assert (b"authorization", b"Bearer k") in passed
