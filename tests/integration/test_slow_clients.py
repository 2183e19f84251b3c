"""Slow uploads on the real app: clients that trickle their body hold no dialogue slot, get a JSON 408
UPLOAD_TIMEOUT once below the minimum rate, and a normal request is served while they trickle."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlparse

import httpx
import pytest

from tests.integration.http import DIALOGUE

pytestmark = pytest.mark.integration

TRICKLERS = 20


async def trickle(host: str, port: int, limit_s: float = 40.0) -> tuple[int, dict[str, object], float]:
    """Send a dialogue request's headers and the start of a valid multipart body, then the audio one byte a
    second; return the status, JSON body and how long the server took to answer."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    head = (
        f"POST {DIALOGUE} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        "Content-Length: 100000\r\n\r\n"
        '--b\r\nContent-Disposition: form-data; name="audio"; filename="q.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\nRIFF"
    )
    writer.write(head.encode())
    try:
        answer = b""
        while time.monotonic() - started < limit_s:
            writer.write(b"\x00")
            await writer.drain()
            try:
                chunk = await asyncio.wait_for(reader.read(65536), timeout=1.0)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
            head_end = answer.find(b"\r\n\r\n")
            if head_end >= 0:
                length = next(
                    int(line.split(b":")[1])
                    for line in answer[:head_end].split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(answer) < head_end + 4 + length:
                    answer += await asyncio.wait_for(reader.read(65536), timeout=5.0)
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
