"""The HTTP edge on a real Serve proxy (voice_orchestrator/edge.py, enabled by serve_config.yaml's
`controller_options` exactly as `serve run` enables it): hostile headers, unparsable requests and a dying
ingress replica all get the JSON error contract, streams still stream, and the server keeps serving."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from ray import cloudpickle, serve
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.integration.faults import kill_replica
from tests.integration.http import DIALOGUE, STATUS, assert_error
from voice_orchestrator.edge import DEFAULT_RETRY_AFTER_S
from voice_orchestrator.protocol import ErrorBody, StreamErrorEvent

pytestmark = pytest.mark.integration

# Replicas cannot import the tests package: ship this module's deployment by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]

ECHO_APP = "edge-echo"


@serve.deployment(num_replicas=2, max_ongoing_requests=100, ray_actor_options={"num_cpus": 0.01})
class EdgeEcho:
    """A second ingress with two replicas: what the proxy passes on, slow answers, and NDJSON streams."""

    async def __call__(self, request: Request) -> Response:
        action = request.url.path.rsplit("/", 1)[-1]
        if action == "headers":
            return JSONResponse({"headers": [[k, v[:200]] for k, v in request.headers.items()]})
        if action == "slow":
            await asyncio.sleep(float(request.query_params.get("s", "1")))
        if action == "stream":
            return StreamingResponse(
                self._events(int(request.query_params.get("die_after", "-1"))),
                media_type="application/x-ndjson",
            )
        return JSONResponse({"pid": os.getpid()})

    async def _events(self, die_after: int) -> AsyncIterator[bytes]:
        for index in range(5):
            if index == die_after:
                os._exit(1)  # the replica dies mid-stream, as a crash would
            yield json.dumps({"type": "tick", "index": index}).encode() + b"\n"
            await asyncio.sleep(0.3)


@pytest.fixture(scope="module")
def echo_url(base_url: str) -> Iterator[str]:
    serve.run(EdgeEcho.bind(), name=ECHO_APP, route_prefix=f"/{ECHO_APP}")  # type: ignore[attr-defined]
    try:
        yield f"{base_url}/{ECHO_APP}"
    finally:
        serve.delete(ECHO_APP)


def raw_exchange(base_url: str, request: bytes) -> bytes:
    """Send raw bytes and read until the server closes (bounded: a hang fails the test)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        chunks: list[bytes] = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def is_contract_answer(response: httpx.Response) -> bool:
    """Anything the server may answer: a success, or the JSON error body (never plain text)."""
    if response.status_code < 400:
        return True
    ErrorBody.model_validate(response.json())
    return response.headers["content-type"].startswith("application/json")


# --- hostile headers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["X-Request-ID", "X-Session-ID"])
def test_a_header_that_is_not_utf8_gets_a_json_400(base_url: str, header: str) -> None:
    response = httpx.get(base_url + STATUS, headers={header.encode(): b"caf\xe9\xff"}, timeout=30)
    body = assert_error(response, 400, "INVALID_REQUEST")
    assert body.details == {"reason": "a header is not valid UTF-8", "header": header.lower()}


def test_an_8_mb_request_id_is_refused_and_a_long_one_replaced(base_url: str) -> None:
    huge = httpx.get(base_url + STATUS, headers={"X-Request-ID": "a" * 8_000_000}, timeout=60)
    assert_error(huge, 400, "INVALID_REQUEST")
    assert len(huge.content) < 1000
    assert len(huge.headers["x-request-id"]) == 32

    long_id = "b" * 300
    replaced = httpx.get(base_url + STATUS, headers={"X-Request-ID": long_id}, timeout=30)
    assert replaced.status_code == 200
    assert len(replaced.headers["x-request-id"]) == 32
    assert long_id not in replaced.text

    kept = httpx.get(base_url + STATUS, headers={"X-Request-ID": "client-id.42"}, timeout=30)
    assert kept.headers["x-request-id"] == "client-id.42"


@pytest.mark.parametrize(("path", "openai"), [("/v1/models", True), (STATUS, False)])
async def test_a_websocket_upgrade_where_no_socket_is_served_gets_the_json_404(
    base_url: str, path: str, openai: bool
) -> None:
    """A real WebSocket client (the `websockets` package) through Serve's proxy: the JSON contract, not
    uvicorn's plain 403 with an empty body; the server keeps serving."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with connect(base_url.replace("http://", "ws://") + path, open_timeout=30):
            pass
    response = refused.value.response
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.body or b"{}")
    assert (body["error"]["code"] if openai else body["error_code"]) == "NOT_FOUND"
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.get(base_url + STATUS)).status_code == 200


def test_app_errors_pass_through_with_the_capped_request_id(base_url: str) -> None:
    response = httpx.post(base_url + DIALOGUE, headers={"X-Request-ID": "c" * 129}, timeout=30)
    assert response.status_code == 400
    body = ErrorBody.model_validate(response.json())
    assert body.request_id == response.headers["x-request-id"]
    assert len(body.request_id) == 32


def test_clients_cannot_steer_serve(echo_url: str) -> None:
    headers = {"X-Request-Timeout-Seconds": "0", "X-Request-Disconnect-Disabled": "?1", "X-Session-ID": "s-1"}
    seen = dict(httpx.get(echo_url + "/headers", headers=headers, timeout=30).json()["headers"])
    assert "x-request-timeout-seconds" not in seen
    assert "x-request-disconnect-disabled" not in seen
    assert seen["x-session-id"] == "s-1"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /api/orchestrator/status HTTP/1.1\r\nHost: t\r\nX-Note: a\rb\r\n\r\n",
        b"POST /api/orchestrator/dialogue HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        b"NOT AN HTTP REQUEST\r\n\r\n",
    ],
    ids=["bare-cr", "negative-length", "request-line"],
)
def test_unparsable_requests_get_a_json_400_and_the_server_keeps_serving(
    base_url: str, request_bytes: bytes
) -> None:
    head, _, body = raw_exchange(base_url, request_bytes).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"content-type: application/json" in head.lower()
    assert ErrorBody.model_validate_json(body).error_code == "INVALID_REQUEST"
    assert httpx.get(base_url + STATUS, timeout=30).status_code == 200


# --- streams and dying replicas -------------------------------------------------------------------------


def read_stream(url: str) -> tuple[httpx.Response, list[dict[str, Any]], list[float]]:
    started = time.monotonic()
    events: list[dict[str, Any]] = []
    arrivals: list[float] = []
    with httpx.stream("GET", url, timeout=60) as response:
        for line in response.iter_lines():
            if line:
                events.append(json.loads(line))
                arrivals.append(time.monotonic() - started)
    return response, events, arrivals


def test_a_stream_passes_the_edge_event_by_event(echo_url: str) -> None:
    response, events, arrivals = read_stream(echo_url + "/stream")
    assert response.status_code == 200
    assert [event["index"] for event in events] == [0, 1, 2, 3, 4]
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert min(gaps) > 0.15, arrivals  # 0.3 s apart at the source: not buffered anywhere on the way


def test_a_replica_dying_mid_stream_ends_it_with_a_typed_error_event(echo_url: str) -> None:
    response, events, _ = read_stream(echo_url + "/stream?die_after=2")
    assert response.status_code == 200
    assert [event["index"] for event in events[:2]] == [0, 1]
    last = StreamErrorEvent.model_validate(events[-1])
    assert (last.error_code, last.retry_after) == ("SERVICE_UNAVAILABLE", DEFAULT_RETRY_AFTER_S)
    assert last.request_id == response.headers["x-request-id"]


def test_with_two_ingress_replicas_only_in_flight_requests_see_a_replica_die(echo_url: str) -> None:
    assert httpx.get(echo_url + "/ping", timeout=30).status_code == 200
    with ThreadPoolExecutor(max_workers=8) as pool:
        in_flight = [pool.submit(httpx.get, echo_url + "/slow?s=3", timeout=60) for _ in range(6)]
        time.sleep(1.0)
        kill_replica("EdgeEcho", app=ECHO_APP)
        killed_at = time.monotonic()
        after: list[httpx.Response] = []
        while time.monotonic() - killed_at < 4:
            after.append(httpx.get(echo_url + "/ping", timeout=30))
            time.sleep(0.05)
        slow = [future.result(timeout=60) for future in in_flight]
    for response in slow:
        if response.status_code != 200:
            assert_error(response, 503, "SERVICE_UNAVAILABLE")
    assert any(response.status_code == 503 for response in slow)  # half of them were on the dead replica
    codes = [response.status_code for response in after]
    assert set(codes) == {200}, codes


def test_killing_the_only_ingress_replica_costs_in_flight_requests_a_json_503(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    files = {"audio": ("question.wav", english_question[0], "application/octet-stream")}

    def dialogue() -> httpx.Response:
        return httpx.post(base_url + DIALOGUE, files=files, timeout=180)

    def stream() -> tuple[int, str, list[dict[str, Any]]]:
        with httpx.stream("POST", base_url + DIALOGUE + "/stream", files=files, timeout=180) as response:
            lines = [json.loads(line) for line in response.iter_lines() if line]
            return response.status_code, response.headers["content-type"], lines

    with ThreadPoolExecutor(max_workers=2) as pool:
        posted = pool.submit(dialogue)
        streamed = pool.submit(stream)
        time.sleep(0.8)  # both are in speech recognition
        kill_replica("Orchestrator")
        killed_at = time.monotonic()
        polls: list[httpx.Response] = []
        while time.monotonic() - killed_at < 90:
            polls.append(httpx.get(base_url + STATUS, timeout=60))
            if polls[-1].status_code == 200 and posted.done() and streamed.done():
                break
            time.sleep(0.2)
        recovered_s = time.monotonic() - killed_at
        response = posted.result(timeout=60)
        code, content_type, events = streamed.result(timeout=60)

    if response.status_code != 200:
        assert_error(response, 503, "SERVICE_UNAVAILABLE")
    if code == 200:  # the stream had begun: it ends with a done or a typed error event
        assert content_type.startswith("application/x-ndjson")
        assert events[-1]["type"] in {"done", "error"}
        if events[-1]["type"] == "error":
            assert StreamErrorEvent.model_validate(events[-1]).error_code == "SERVICE_UNAVAILABLE"
    else:
        assert code == 503
        assert content_type.startswith("application/json")
        assert ErrorBody.model_validate(events[0]).error_code == "SERVICE_UNAVAILABLE"
    assert all(is_contract_answer(poll) for poll in polls)
    assert polls[-1].status_code == 200, f"not serving again {recovered_s:.1f} s after the kill"
    assert dialogue().status_code == 200
