"""The HTTP layer without Ray: upload limits and deadlines, the error contract for Starlette's own refusals,
admission after the body, and joining a reply's sentences."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from fastapi import Request

from tests.unit.fakes import SPEECH, fake_app
from voice_orchestrator.api.uploads import UploadLimits, read_form
from voice_orchestrator.config_check import problems
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import ErrorBody, SpeechAudio
from voice_orchestrator.settings import IngressSettings, apply_live
from voice_orchestrator.turn import join_speech

BOUNDARY = "b0undary"
BODY = (
    (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="audio"; filename="q.wav"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    + SPEECH
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)


def _request(chunks: list[bytes], pause_s: float, ends: bool = True) -> Request:
    """A request whose body arrives in `chunks`, `pause_s` apart; without `ends`, the client then stalls."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode())],
    }
    pending = list(chunks)

    async def receive() -> dict[str, Any]:
        await asyncio.sleep(pause_s)
        if not pending:
            await asyncio.sleep(3600)  # a client that stalls for good
        chunk = pending.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending) or not ends}

    return Request(scope, receive)


async def test_a_prompt_upload_is_read_whole() -> None:
    limits = UploadLimits(max_bytes=10**6, timeout_s=5.0, min_bytes_per_second=1000.0, rate_grace_s=0.2)
    form = await read_form(_request([BODY[:100], BODY[100:]], 0.01), limits)
    audio = form.get("audio")
    assert audio is not None
    assert not isinstance(audio, str)
    assert await audio.read() == SPEECH


@pytest.mark.parametrize(
    ("chunks", "pause_s", "limits"),
    [
        # trickling: one byte at a time, below the minimum rate once the grace period is over
        ([bytes([byte]) for byte in BODY[:200]], 0.02, UploadLimits(10**6, 30.0, 1000.0, rate_grace_s=0.3)),
        # stalled: half the body, then nothing
        ([BODY[: len(BODY) // 2]], 0.0, UploadLimits(10**6, 30.0, 100_000.0, rate_grace_s=0.3)),
        # fast enough per chunk but past the overall deadline
        ([BODY[i : i + 500] for i in range(0, len(BODY), 500)], 0.05, UploadLimits(10**6, 0.4, 1.0, 0.1)),
    ],
    ids=["trickle", "stall", "deadline"],
)
async def test_slow_uploads_are_refused_with_408(
    chunks: list[bytes], pause_s: float, limits: UploadLimits
) -> None:
    with pytest.raises(OrchestratorError) as caught:
        await asyncio.wait_for(read_form(_request(chunks, pause_s, ends=False), limits), timeout=10)
    assert caught.value.code is OrchestratorErrorCode.UPLOAD_TIMEOUT
    assert caught.value.http_status == 408


async def test_an_upload_past_the_byte_limit_is_refused_while_it_arrives() -> None:
    limits = UploadLimits(max_bytes=1000, timeout_s=5.0, min_bytes_per_second=1.0)
    with pytest.raises(OrchestratorError) as caught:
        await read_form(_request([BODY[i : i + 600] for i in range(0, len(BODY), 600)], 0.0), limits)
    assert caught.value.code is OrchestratorErrorCode.PAYLOAD_TOO_LARGE


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "NOT_FOUND"),
        ("GET", "/api/orchestrator/dialogue", 405, "METHOD_NOT_ALLOWED"),
        ("DELETE", "/api/orchestrator/sessions/bad%20id", 400, "INVALID_REQUEST"),
    ],
)
async def test_starlettes_own_refusals_are_in_the_contract(
    method: str, path: str, status: int, code: str
) -> None:
    client = fake_app().client
    async with client:
        response = await client.request(method, path, headers={"X-Request-ID": "rid-1"})
    assert response.status_code == status
    body = ErrorBody.model_validate(response.json())
    assert (body.error_code, body.request_id) == (code, "rid-1")


async def test_both_routes_answer_and_a_full_server_refuses_before_reading() -> None:
    app = fake_app(max_concurrent_dialogues=1)
    files = {"audio": ("q.wav", SPEECH, "application/octet-stream")}
    async with app.client as client:
        whole = await client.post("/api/orchestrator/dialogue", files=files)
        assert whole.status_code == 200, whole.text
        assert whole.headers["x-output-text"]
        streamed = await client.post("/api/orchestrator/dialogue/stream", files=files)
        assert [line.count('"type"') for line in streamed.text.splitlines()] == [1, 1, 1]
        with app.gate.admit():  # another dialogue holds the only slot
            refused = await client.post("/api/orchestrator/dialogue", files=files)
    assert refused.status_code == 429
    assert ErrorBody.model_validate(refused.json()).details == {"max_concurrent_dialogues": 1}
    assert app.gate.dialogues.active == 0


async def test_live_settings_change_the_limits_at_once() -> None:
    app = fake_app(max_concurrent_dialogues=2)
    app.live.current = IngressSettings(max_concurrent_dialogues=7)
    async with app.client as client:
        status = (await client.get("/api/orchestrator/status")).json()
    assert status["max_concurrent_dialogues"] == 7


def test_a_running_replica_refuses_an_invalid_user_config_and_keeps_its_settings() -> None:
    running = IngressSettings(max_concurrent_dialogues=3)
    assert apply_live(IngressSettings, {"max_concurrent_dialogues": 0}, running) is running
    assert apply_live(IngressSettings, {"max_concurrent_dialogues": 4}, running).max_concurrent_dialogues == 4
    with pytest.raises(ValueError, match="max_concurrent_dialogues"):  # at start: the deploy fails with why
        apply_live(IngressSettings, {"max_concurrent_dialogues": 0}, None)

    def no_kumo(live: IngressSettings) -> None:
        raise ValueError("refused by the engine")

    assert apply_live(IngressSettings, {}, running, no_kumo) is running


def test_config_check_names_every_invalid_setting() -> None:
    config = {
        "applications": [
            {
                "name": "voice",
                "import_path": "graph:build_app",
                "args": {"stt": {"beam_size": 0}},
                "deployments": [
                    {"name": "Orchestrator", "user_config": {"max_concurrent_dialogues": "many"}},
                    {"name": "TextToSpeech", "user_config": {"default_voice": "jm_kumo"}},
                    {"name": "Nope"},
                ],
            },
            {"name": "other", "import_path": "other:app", "args": {"anything": 1}},
        ]
    }
    found = problems(config)
    assert len(found) == 3
    assert "beam_size" in found[0]
    assert "max_concurrent_dialogues" in found[1]
    assert "Nope" in found[2]


def test_a_reply_in_two_voices_is_joined_at_one_rate() -> None:
    parts = [
        SpeechAudio(samples=np.full(22_050, 0.1, np.float32), sample_rate=22_050, voice="piper"),
        SpeechAudio(samples=np.full(24_000, 0.2, np.float32), sample_rate=24_000, voice="kokoro"),
    ]
    joined = join_speech(parts)
    assert joined.sample_rate == 24_000
    assert joined.duration_s == pytest.approx(2.0, abs=0.01)
    assert joined.samples[12_000] == pytest.approx(0.1, abs=0.01)
    assert joined.samples[36_000] == pytest.approx(0.2, abs=0.01)
