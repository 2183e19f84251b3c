"""End to end over HTTP on a real Serve app: real speech in, real speech out, and the error contract."""

from __future__ import annotations

import difflib
import io
import json
import re
import time
import uuid
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import httpx
import numpy as np
import pytest
import ray
from ray import serve

from tests.audio_factory import encode, tone
from tests.integration.http import assert_error
from tests.integration.http import post_dialogue as post
from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.protocol import Transcription
from voice_orchestrator.text import is_japanese

pytestmark = pytest.mark.integration

ROUTE = "/api/orchestrator/dialogue"
TIMING_HEADERS = (
    "X-Processing-Time-Total",
    "X-Processing-Time-STT",
    "X-Processing-Time-LLM",
    "X-Processing-Time-TTS",
)


def wav_samples(body: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(body)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return frames.astype(np.float32) / 32768.0, wav.getframerate()


def retranscribe(body: bytes) -> Transcription:
    """The reply's audio, heard again by the served speech-to-text deployment."""
    decoded = decode_audio(body, AudioLimits(0.0, 120.0))
    handle = serve.get_deployment_handle("SpeechToText", app_name="voice")
    result: Transcription = handle.transcribe.remote(decoded, None).result(timeout_s=120)
    return result


def similarity(a: str, b: str) -> float:
    """How alike two texts sound: their letters, or for Japanese their readings (what is said, not how it is
    written: Whisper may write 晴天です as セーテンです, both セーテンデス)."""

    def norm(text: str) -> str:
        if is_japanese(text):
            import pyopenjtalk

            text = str(pyopenjtalk.g2p(text, kana=True))
        return re.sub(r"[\W_]+", "", text.lower())

    return difflib.SequenceMatcher(None, norm(a), norm(b)).ratio()


@pytest.mark.parametrize("question", ["japanese_question", "english_question"])
def test_spoken_question_gets_a_spoken_answer(
    base_url: str, question: str, request: pytest.FixtureRequest
) -> None:
    audio, keyword = request.getfixturevalue(question)
    response = post(base_url, audio)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"

    heard = unquote(response.headers["X-Input-Text"])
    answer = unquote(response.headers["X-Output-Text"])
    assert keyword in heard.lower()
    japanese = question == "japanese_question"
    assert response.headers["X-Input-Language"] == ("ja" if japanese else "en")
    assert answer
    assert is_japanese(answer) is japanese  # answered in the language it was asked in

    samples, rate = wav_samples(response.content)
    assert rate == int(response.headers["X-Output-Sample-Rate"]) == (24_000 if japanese else 22_050)
    assert len(samples) / rate == pytest.approx(float(response.headers["X-Output-Duration"]), abs=0.01)
    assert float(np.sqrt(np.mean(samples**2))) > 0.01  # not silence

    # The reply is real speech: heard again, it says what X-Output-Text says.
    again = retranscribe(response.content)
    assert similarity(again.text, answer) >= 0.5, (again.text, answer)


def test_response_headers_follow_the_contract(base_url: str, english_question: tuple[bytes, str]) -> None:
    response = httpx.post(
        f"{base_url}{ROUTE}",
        files={"audio": ("q", english_question[0])},
        headers={"X-Request-ID": "trace-abc-123"},
        timeout=120,
    )
    assert response.status_code == 200
    assert response.headers.get_list("x-request-id") == ["trace-abc-123"]
    timings = {name: float(response.headers[name]) for name in TIMING_HEADERS}
    assert all(value > 0 for value in timings.values())
    stages = (
        timings["X-Processing-Time-STT"] + timings["X-Processing-Time-LLM"] + timings["X-Processing-Time-TTS"]
    )
    assert timings["X-Processing-Time-Total"] >= stages
    assert float(response.headers["X-Input-Duration"]) == pytest.approx(
        decode_audio(english_question[0], AudioLimits(0, 60)).duration_s, abs=0.01
    )
    for name in ("X-Input-Text", "X-Output-Text"):
        response.headers[name].encode("ascii")  # percent-encoded


def test_forced_language_is_used(base_url: str, japanese_question: tuple[bytes, str]) -> None:
    response = post(base_url, japanese_question[0], language="ja")
    assert response.status_code == 200
    assert response.headers["X-Input-Language"] == "ja"
    assert_error(post(base_url, japanese_question[0], language="xx-evil"), 400, "INVALID_REQUEST")


@pytest.mark.parametrize(
    ("audio", "status", "code"),
    [
        (None, 400, "INVALID_AUDIO_FORMAT"),
        (b"", 400, "INVALID_AUDIO_FORMAT"),
        (b"this is plain text, not audio" * 20, 400, "INVALID_AUDIO_FORMAT"),
        (
            bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8)),
            400,
            "INVALID_AUDIO_FORMAT",
        ),
        (encode(tone(0.2), 16_000, "wav-s16"), 400, "AUDIO_TOO_SHORT"),
        (encode(tone(61.0, rate=8_000), 8_000, "wav-u8"), 400, "AUDIO_TOO_LONG"),
        (np.zeros(3 * 1024 * 1024, dtype=np.uint8).tobytes(), 413, "PAYLOAD_TOO_LARGE"),
        (encode(np.zeros(32_000, dtype=np.float32), 16_000, "wav-s16"), 422, "SPEECH_RECOGNITION_FAILED"),
    ],
    ids=["missing", "empty", "text", "random", "short", "long", "too-large", "silence"],
)
def test_bad_uploads_get_typed_json_errors(
    base_url: str, audio: bytes | None, status: int, code: str
) -> None:
    assert_error(post(base_url, audio), status, code)


def test_non_multipart_body_is_a_typed_error(base_url: str) -> None:
    response = httpx.post(f"{base_url}{ROUTE}", json={"audio": "AAAA"}, timeout=30)
    assert_error(response, 400, "INVALID_AUDIO_FORMAT")


def test_excess_concurrent_dialogues_get_429_and_the_rest_succeed(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(lambda _: post(base_url, english_question[0]), range(6)))
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 2  # the limit is 2 in flight
    refused = [response for response in responses if response.status_code == 429]
    assert refused, statuses
    for response in refused:
        assert_error(response, 429, "TOO_MANY_REQUESTS")
    # Still serving afterwards.
    assert post(base_url, english_question[0]).status_code == 200


def test_one_request_can_be_followed_through_every_replica_log(
    base_url: str, japanese_question: tuple[bytes, str]
) -> None:
    request_id = f"trace-{uuid.uuid4().hex}"
    response = httpx.post(
        f"{base_url}{ROUTE}",
        files={"audio": ("q.wav", japanese_question[0])},
        headers={"X-Request-ID": request_id},
        timeout=120,
    )
    assert response.status_code == 200
    node = ray._private.worker._global_node
    assert node is not None
    logs = Path(node.get_session_dir_path()) / "logs"
    lines: list[dict[str, object]] = []
    for _ in range(50):  # replicas write their stderr files asynchronously
        lines = [
            json.loads(line[line.index("{") :])
            for path in logs.glob("worker-*.err")
            for line in path.read_text(errors="replace").splitlines()
            if request_id in line and "{" in line
        ]
        if {line.get("stage") for line in lines} >= {"stt", "llm", "tts"}:
            break
        time.sleep(0.1)
    assert {line.get("stage") for line in lines} >= {"stt", "llm", "tts"}, lines
    served = [line for line in lines if line["message"] == "dialogue served"]
    assert len(served) == 1
    assert served[0]["status_code"] == 200
    # Transcripts are personal data: not logged unless log_transcripts is on.
    assert all("input_text" not in line and "output_text" not in line for line in lines)
    assert unquote(response.headers["X-Input-Text"]) not in json.dumps(lines, ensure_ascii=False)
