"""The streaming route and conversations on the real app: sentences arrive as they are spoken, errors keep
the contract before the first byte and end the stream with a typed event after it, sessions carry context."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
import wave
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.integration.faults import deploy_orchestrator, kill_replica
from tests.integration.http import DIALOGUE, assert_error, get_status
from voice_orchestrator.protocol import (
    StreamAudioEvent,
    StreamDoneEvent,
    StreamErrorEvent,
    StreamTranscriptEvent,
)
from voice_orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.integration

STREAM = DIALOGUE + "/stream"
SESSIONS = "/api/orchestrator/sessions/"


def stream_dialogue(
    url: str, audio: bytes, **fields: str
) -> tuple[httpx.Response, list[dict[str, Any]], list[float]]:
    """POST to the streaming route; the events and the second each one arrived after the request."""
    files = {"audio": ("question.wav", audio, "application/octet-stream")}
    started = time.perf_counter()
    events: list[dict[str, Any]] = []
    arrivals: list[float] = []
    with httpx.stream("POST", url + STREAM, files=files, data=fields or None, timeout=180) as response:
        if response.status_code != 200:
            response.read()
            return response, events, arrivals
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
                arrivals.append(time.perf_counter() - started)
    return response, events, arrivals


def wav_of(event: StreamAudioEvent) -> tuple[int, int, int]:
    with wave.open(io.BytesIO(base64.b64decode(event.audio))) as wav:
        return wav.getnchannels(), wav.getframerate(), wav.getnframes()


def test_japanese_reply_streams_sentence_by_sentence(
    base_url: str, japanese_question: tuple[bytes, str]
) -> None:
    audio, keyword = japanese_question
    response, events, arrivals = stream_dialogue(base_url, audio)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert keyword in unquote(response.headers["X-Input-Text"])

    transcript = StreamTranscriptEvent.model_validate(events[0])
    assert keyword in transcript.text
    assert transcript.language == "ja"
    assert transcript.request_id == response.headers["x-request-id"]
    done = StreamDoneEvent.model_validate(events[-1])
    sentences = [StreamAudioEvent.model_validate(event) for event in events[1:-1]]
    assert sentences, "no audio was streamed"
    assert [s.index for s in sentences] == list(range(len(sentences)))
    for sentence in sentences:
        channels, rate, frames = wav_of(sentence)
        assert channels == 1
        assert rate == sentence.sample_rate
        assert frames / rate == pytest.approx(sentence.duration_s, abs=0.01)
        assert sentence.duration_s > 0.2
    meta = done.metadata
    assert meta.sentences == len(sentences)
    assert meta.output_text == "".join(s.text for s in sentences)
    assert meta.output_duration_s == pytest.approx(sum(s.duration_s for s in sentences), abs=0.01)
    assert 0 < meta.time_to_first_audio_ms <= meta.total_ms
    # The first audio left the server before the reply was finished.
    assert arrivals[1] <= arrivals[-1]


def test_english_reply_streams_too(base_url: str, english_question: tuple[bytes, str]) -> None:
    audio, keyword = english_question
    response, events, _ = stream_dialogue(base_url, audio, language="en")
    assert response.status_code == 200, response.text
    assert keyword in events[0]["text"].lower()
    assert events[-1]["type"] == "done"
    assert all(event["type"] == "audio" for event in events[1:-1])


def test_errors_before_the_first_byte_keep_the_json_contract(base_url: str) -> None:
    response, events, _ = stream_dialogue(base_url, b"definitely not audio" * 20)
    assert_error(response, 400, "INVALID_AUDIO_FORMAT")
    assert events == []
    response, _, _ = stream_dialogue(base_url, b"RIFF", session_id="../../etc")
    assert_error(response, 400, "INVALID_REQUEST")


def test_a_model_failing_mid_stream_ends_with_a_typed_error_event(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    prefix = deploy_orchestrator("stream-breaks", OrchestratorSettings(), scripted_llm=True)
    response, events, _ = stream_dialogue(base_url + prefix, english_question[0])
    assert response.status_code == 200
    assert [event["type"] for event in events] == ["transcript", "audio", "error"]
    assert events[1]["text"] == "I remember 0 turns."
    error = StreamErrorEvent.model_validate(events[-1])
    assert error.error_code == "LLM_SERVICE_UNAVAILABLE"
    assert error.request_id == response.headers["x-request-id"]
    assert error.retry_after is not None
    assert "injected" not in error.message


def test_the_model_replica_killed_mid_stream_ends_with_a_typed_error_event(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    """Not an exception in the model: its replica process dies while the reply streams (a crash, an OOM kill).
    The sentence already spoken stays; the stream ends with the LLM stage's typed error, never cut."""
    prefix = deploy_orchestrator(
        "llm-killed", OrchestratorSettings(), scripted_llm=False, scripted_pause_s=30.0
    )
    files = {"audio": ("question.wav", english_question[0], "application/octet-stream")}
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", base_url + prefix + STREAM, files=files, timeout=180) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
                if events[-1]["type"] == "audio":  # the model is now pausing before its second sentence
                    kill_replica("ScriptedLanguageModel", app="llm-killed")
    assert [event["type"] for event in events] == ["transcript", "audio", "error"]
    error = StreamErrorEvent.model_validate(events[-1])
    assert error.error_code == "LLM_SERVICE_UNAVAILABLE"
    assert error.retry_after is not None


def test_a_session_carries_context_and_can_be_forgotten(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    prefix = deploy_orchestrator("sessions", OrchestratorSettings(), scripted_llm=False)
    url = base_url + prefix
    session = uuid.uuid4().hex

    def turns_seen(**fields: str) -> str:
        files = {"audio": ("q.wav", english_question[0], "application/octet-stream")}
        response = httpx.post(url + DIALOGUE, files=files, data=fields or None, timeout=180)
        assert response.status_code == 200, response.text
        return unquote(response.headers["X-Output-Text"])

    assert turns_seen(session_id=session).startswith("I remember 0 turns.")
    assert turns_seen(session_id=session).startswith("I remember 1 turns.")
    _, events, _ = stream_dialogue(url, english_question[0], session_id=session)
    assert events[0]["session_id"] == session
    assert events[1]["text"] == "I remember 2 turns."
    assert turns_seen().startswith("I remember 0 turns.")  # no session: stateless

    forgotten = httpx.delete(url + SESSIONS + session, timeout=30)
    assert forgotten.status_code == 200
    assert forgotten.json() == {"session_id": session, "deleted": True}
    assert turns_seen(session_id=session).startswith("I remember 0 turns.")
    # The real ingress shares the same memory: a session is not tied to one ingress.
    again = httpx.delete(base_url + SESSIONS + session, timeout=30)
    assert again.json() == {"session_id": session, "deleted": True}
    assert httpx.delete(base_url + SESSIONS + session, timeout=30).json()["deleted"] is False


def test_a_client_leaving_mid_stream_frees_its_slot(
    base_url: str, japanese_question: tuple[bytes, str]
) -> None:
    files = {"audio": ("question.wav", japanese_question[0], "application/octet-stream")}
    with httpx.stream("POST", base_url + STREAM, files=files, timeout=180) as response:
        assert response.status_code == 200
        first = next(response.iter_lines())
        assert json.loads(first)["type"] == "transcript"
    # The connection is closed before the reply was spoken: the dialogue slot must come back.
    deadline = time.monotonic() + 60
    while True:
        _, status = get_status(base_url)
        if status.active_dialogues == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status.active_dialogues == 0


def test_the_browser_page_is_served(base_url: str) -> None:
    page = httpx.get(base_url + "/", timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/api/orchestrator/dialogue/stream" in page.text


def test_a_voice_can_be_chosen_and_an_unknown_one_is_a_client_error(
    base_url: str, japanese_question: tuple[bytes, str]
) -> None:
    files = {"audio": ("q.wav", japanese_question[0], "application/octet-stream")}
    chosen = httpx.post(base_url + DIALOGUE, files=files, data={"voice": "jm_kumo"}, timeout=180)
    assert chosen.status_code == 200, chosen.text
    unknown = httpx.post(base_url + DIALOGUE, files=files, data={"voice": "nobody"}, timeout=180)
    body = assert_error(unknown, 400, "INVALID_REQUEST")
    assert body.details == {"field": "voice"}
    assert "jf_alpha" in body.message  # the error lists the voices there are
    _, status = get_status(base_url)
    assert status.services["tts"].status == "healthy"  # a client's mistake is not the engine's failure


@pytest.mark.parametrize("question", ["japanese_question", "english_question"])
def test_both_routes_hear_say_and_voice_the_same_reply(question: str, request: pytest.FixtureRequest) -> None:
    """One dialogue core: the whole-reply WAV is the streamed sentences joined, same transcript, same text,
    same voice (same rate, same length within a few milliseconds: the voices' noise differs run to run)."""
    base_url: str = request.getfixturevalue("base_url")
    audio, _ = request.getfixturevalue(question)
    whole = httpx.post(
        base_url + DIALOGUE, files={"audio": ("q.wav", audio, "application/octet-stream")}, timeout=180
    )
    assert whole.status_code == 200, whole.text
    response, events, _ = stream_dialogue(base_url, audio)
    assert response.status_code == 200, response.text
    done = StreamDoneEvent.model_validate(events[-1]).metadata
    sentences = [StreamAudioEvent.model_validate(event) for event in events[1:-1]]
    assert unquote(whole.headers["X-Input-Text"]) == events[0]["text"] == done.input_text
    assert unquote(whole.headers["X-Output-Text"]) == done.output_text
    assert whole.headers["X-Input-Language"] == done.input_language
    with wave.open(io.BytesIO(whole.content)) as wav:
        rate, seconds = wav.getframerate(), wav.getnframes() / wav.getframerate()
    assert rate == done.output_sample_rate == max(sentence.sample_rate for sentence in sentences)
    assert seconds == pytest.approx(sum(sentence.duration_s for sentence in sentences), rel=0.15)
    assert float(whole.headers["X-Output-Duration"]) == pytest.approx(seconds, abs=0.01)
