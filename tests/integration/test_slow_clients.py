"""Slow uploads on the real app: clients that trickle their body hold no dialogue slot, get a JSON 408
UPLOAD_TIMEOUT once below the minimum rate, and a normal request is served while they trickle.

Clients that upload slowly but above the minimum rate (`upload_min_bytes_per_second`) must be read on, and
must hold no dialogue slot either while their body is arriving: on every route that reads a body (the dialogue
routes and the OpenAI-compatible /v1 ones), one more such client than there are dialogue slots, and a normal
dialogue is still served; once they abort, no dialogue is counted as active."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import TEST_ARGS
from tests.integration.http import DIALOGUE, STATUS

pytestmark = pytest.mark.integration

TRICKLERS = 20

BOUNDARY = "b"
# Above the app's 1 KiB/s minimum (`upload_min_bytes_per_second`, the default in the tests' app) with room
# for a loaded machine, and a body that would take this long at that rate (well under
# `upload_timeout_seconds`).
ABOVE_MINIMUM_BYTES_PER_SECOND = 1400.0
ABOVE_MINIMUM_CHUNK_BYTES = 200
ABOVE_MINIMUM_SECONDS = 25.0


@dataclass(frozen=True)
class Upload:
    """A request for a raw connection: its route, Content-Type and whole body (`head_bytes` of which are sent
    with the headers at once, the rest trickled)."""

    route: str
    content_type: str
    body: bytes
    head_bytes: int


def multipart_upload(route: str, file_field: str, size: int, fields: dict[str, str] | None = None) -> Upload:
    """A valid multipart body of `size` bytes: the text `fields`, then a file (`RIFF` and zeros)."""
    parts = "".join(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in (fields or {}).items()
    )
    start = (
        f'{parts}--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename="q.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\nRIFF"
    ).encode()
    end = f"\r\n--{BOUNDARY}--\r\n".encode()
    body = start + b"\x00" * (size - len(start) - len(end)) + end
    return Upload(route, f"multipart/form-data; boundary={BOUNDARY}", body, len(start))


def json_upload(route: str, payload: dict[str, object], size: int) -> Upload:
    """`payload` as a valid JSON body of `size` bytes (padded with whitespace before its closing brace)."""
    compact = json.dumps(payload, ensure_ascii=False).encode()
    body = compact[:-1] + b" " * (size - len(compact)) + b"}"
    return Upload(route, "application/json", body, 1)


def _slow_uploads() -> list[Upload]:
    size = int(ABOVE_MINIMUM_BYTES_PER_SECOND * ABOVE_MINIMUM_SECONDS)
    question = "今日の天気について、できるだけ詳しく教えてください。" * 20
    return [
        multipart_upload(DIALOGUE, "audio", size),
        multipart_upload(f"{DIALOGUE}/stream", "audio", size),
        multipart_upload("/v1/audio/transcriptions", "file", size, {"model": "whisper-1"}),
        multipart_upload("/v1/audio/translations", "file", size, {"model": "whisper-1"}),
        json_upload(
            "/v1/chat/completions",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]},
            size,
        ),
        json_upload("/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "こんにちは。"}, size),
    ]


SLOW_UPLOADS = _slow_uploads()
# The existing one-byte-a-second dialogue upload: the multipart start, then the audio's zeros.
DRIP = multipart_upload(DIALOGUE, "audio", 100_000)


async def trickle(
    host: str,
    port: int,
    upload: Upload = DRIP,
    bytes_per_second: float = 1.0,
    chunk_bytes: int = 1,
    limit_s: float = 40.0,
) -> tuple[int, dict[str, object], float]:
    """Send a request's headers and the start of its body, then the rest `chunk_bytes` at a time at
    `bytes_per_second`, never its last byte (the body stays unfinished); return the status, JSON body and how
    long the server took to answer. Cancelling it closes the connection: a client abort."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    head = (
        f"POST {upload.route} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {upload.content_type}\r\n"
        f"Content-Length: {len(upload.body)}\r\n\r\n"
    )
    writer.write(head.encode() + upload.body[: upload.head_bytes])
    sent, last = upload.head_bytes, len(upload.body) - 1
    interval = chunk_bytes / bytes_per_second
    next_send = started
    try:
        answer = b""
        while (now := time.monotonic()) - started < limit_s:
            if sent < last and now >= next_send:
                writer.write(upload.body[sent : min(sent + chunk_bytes, last)])
                sent = min(sent + chunk_bytes, last)
                next_send += interval
            await writer.drain()
            wake = next_send if sent < last else started + limit_s
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=max(wake - time.monotonic(), 0.0))
            except TimeoutError:
                continue
            if not chunk:
                raise AssertionError(f"{upload.route}: the connection closed without an answer")
            answer += chunk
            head_end = answer.find(b"\r\n\r\n")
            if head_end >= 0:
                length = next(
                    int(line.split(b":")[1])
                    for line in answer[:head_end].split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                for _ in range(length):  # at least a byte a read, each within 5 s
                    if len(answer) >= head_end + 4 + length:
                        break
                    more = await asyncio.wait_for(reader.read(65536), timeout=5.0)
                    if not more:
                        break
                    answer += more
                status = int(answer.split(b" ", 2)[1])
                return status, json.loads(answer[head_end + 4 :]), time.monotonic() - started
        raise AssertionError(f"no answer within {limit_s} s")
    finally:
        writer.close()


async def test_a_request_is_served_while_slow_uploads_trickle(
    base_url: str, japanese_question: tuple[bytes, str]
) -> None:
    url = urlparse(base_url)
    assert url.hostname is not None
    assert url.port is not None
    slow = [asyncio.create_task(trickle(url.hostname, url.port)) for _ in range(TRICKLERS)]
    await asyncio.sleep(1.0)  # every trickler is connected and sending
    audio, _ = japanese_question
    async with httpx.AsyncClient(timeout=120) as client:
        files = {"audio": ("question.wav", audio, "application/octet-stream")}
        served = await client.post(f"{base_url}{DIALOGUE}", files=files)
        assert served.status_code == 200, served.text
        answers = await asyncio.gather(*slow)
        for status, body, took_s in answers:
            assert status == 408, body
            assert body["error_code"] == "UPLOAD_TIMEOUT"
            assert took_s < 30  # the 5 s grace, then below 1 KiB/s: refused, not held for minutes
        status_page = (await client.get(f"{base_url}/api/orchestrator/status")).json()
        assert status_page["active_dialogues"] == 0


def _outcome(task: asyncio.Task[tuple[int, dict[str, object], float]]) -> object:
    error = task.exception()
    return repr(error) if error is not None else task.result()


async def _abort_and_settle(
    slow: list[asyncio.Task[tuple[int, dict[str, object], float]]], base_url: str, within_s: float = 5.0
) -> int:
    """Abort the trickling connections; the number of active dialogues once it is 0, or after `within_s`."""
    for task in slow:
        task.cancel()
    await asyncio.gather(*slow, return_exceptions=True)
    active = -1
    deadline = time.monotonic() + within_s
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(50):
            active = (await client.get(f"{base_url}{STATUS}")).json()["active_dialogues"]
            if active == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    return int(active)


@pytest.mark.parametrize("upload", SLOW_UPLOADS, ids=[upload.route.strip("/") for upload in SLOW_UPLOADS])
async def test_uploads_above_the_minimum_rate_hold_no_dialogue_slot(
    base_url: str, japanese_question: tuple[bytes, str], upload: Upload
) -> None:
    url = urlparse(base_url)
    assert url.hostname is not None
    assert url.port is not None
    async with httpx.AsyncClient(timeout=10) as client:
        limit = (await client.get(f"{base_url}{STATUS}")).json()["max_concurrent_dialogues"]
    assert limit == TEST_ARGS["max_concurrent_dialogues"]
    clients = int(limit) + 1  # one more than there are dialogue slots
    trickling_since = time.monotonic()
    slow = [
        asyncio.create_task(
            trickle(
                url.hostname,
                url.port,
                upload,
                ABOVE_MINIMUM_BYTES_PER_SECOND,
                ABOVE_MINIMUM_CHUNK_BYTES,
                limit_s=ABOVE_MINIMUM_SECONDS + 20.0,
            )
        )
        for _ in range(clients)
    ]
    audio, _ = japanese_question
    try:
        # Once while every trickler is connected and sending, once past the server's 5 s grace (where only the
        # rate keeps them in): a normal dialogue is served, and every trickler is still uploading.
        for at_s in (2.0, 8.0):
            await asyncio.sleep(max(trickling_since + at_s - time.monotonic(), 0.0))
            async with httpx.AsyncClient(timeout=120) as client:
                files = {"audio": ("question.wav", audio, "application/octet-stream")}
                served = await client.post(f"{base_url}{DIALOGUE}", files=files)
            now_s = time.monotonic() - trickling_since
            assert served.status_code == 200, (
                f"{upload.route} at {at_s:g} s: {served.status_code} {served.text}"
            )
            answered = [_outcome(task) for task in slow if task.done()]
            assert not answered, f"{upload.route}: tricklers answered within {now_s:.1f} s: {answered}"
        # Every trickler is mid-body still: the normal dialogues were served before their bodies could end.
        assert time.monotonic() - trickling_since < ABOVE_MINIMUM_SECONDS
    finally:
        active = await _abort_and_settle(slow, base_url)
    assert active == 0, f"{upload.route}: {active} dialogues still active after the tricklers aborted"
