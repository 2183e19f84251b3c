"""The realtime socket on the real app (Ray Serve, the packaged models), driven by the official `openai` SDK's
realtime client: spoken questions streamed at real-time pace then silence, manual turns, typed messages,
barge-in, and what a careless or hostile client sends."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as raw_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import PROXY_TIMEOUT_S
from tests.integration.realtime_client import (
    Events,
    audio_seconds,
    barge_in,
    collect,
    connect,
    in_order,
    pcm24k,
    silence,
    stream,
)
from tests.integration.test_openai_readme import DOCUMENTED_URL, readme_example

IN_ORDER = [
    "session.created",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.input_audio_transcription.completed",
    "response.created",
    "response.output_item.added",
    "response.output_audio_transcript.delta",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.output_item.done",
    "response.done",
]


def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://") + "/v1/realtime?model=voice-dialogue"


async def spoken_turn(base_url: str, wav: bytes, language: str) -> Events:
    events = Events()
    async with connect(base_url) as connection:
        collector = asyncio.create_task(collect(connection, events))
        try:
            session = {"type": "realtime", "audio": {"input": {"transcription": {"language": language}}}}
            await connection.session.update(session=session)  # type: ignore[arg-type]
            await stream(connection, pcm24k(wav) + silence(0.3))
            silent = asyncio.create_task(stream(connection, silence(10.0)))
            await events.until("response.done", within=60)
            silent.cancel()
        finally:
            collector.cancel()
    return events


@pytest.mark.parametrize("language", ["ja", "en"])
async def test_a_spoken_question_streamed_in_real_time_is_answered_aloud(
    base_url: str,
    language: str,
    japanese_question: tuple[bytes, str],
    english_question: tuple[bytes, str],
) -> None:
    wav, keyword = japanese_question if language == "ja" else english_question
    events = await spoken_turn(base_url, wav, language)
    assert not events.of("error"), events.of("error")
    assert in_order(events.types(), IN_ORDER), events.types()
    transcript = events.of("conversation.item.input_audio_transcription.completed")[0].transcript
    assert keyword in transcript.lower()
    (done,) = events.of("response.done")
    assert done.response.status == "completed"
    reply = done.response.output[0].content[0].transcript
    assert reply
    assert reply == events.of("response.output_audio_transcript.done")[0].transcript
    assert audio_seconds(events) > 0.3
    metadata = done.response.metadata
    assert float(metadata["end_of_speech_to_first_audio_ms"]) > 0
    assert float(metadata["tts_ms"]) > 0
    assert done.response.usage.output_tokens >= 1
    # The turn ended on the silence, not at the end of the streamed audio.
    stopped = events.of("input_audio_buffer.speech_stopped")[0]
    started = events.of("input_audio_buffer.speech_started")[0]
    assert 0 < stopped.audio_end_ms - started.audio_start_ms < 6000


async def test_manual_turns_commit_then_answer_on_request(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    wav, keyword = english_question
    events = Events()
    async with connect(base_url) as connection:
        collector = asyncio.create_task(collect(connection, events))
        try:
            session = {"type": "realtime", "audio": {"input": {"turn_detection": None}}}
            await connection.session.update(session=session)  # type: ignore[arg-type]
            await stream(connection, pcm24k(wav), pace=20.0)
            await asyncio.sleep(1.0)
            assert "input_audio_buffer.speech_started" not in events.types()
            assert "response.created" not in events.types()
            await connection.input_audio_buffer.commit()
            await events.until("conversation.item.input_audio_transcription.completed")
            await connection.response.create()
            (done,) = await events.until("response.done")
        finally:
            collector.cancel()
    assert keyword in events.of("conversation.item.input_audio_transcription.completed")[0].transcript.lower()
    assert done.response.status == "completed"
    assert audio_seconds(events) > 0.3


async def test_a_typed_message_is_answered_in_text_or_speech(base_url: str) -> None:
    events = Events()
    async with connect(base_url) as connection:
        collector = asyncio.create_task(collect(connection, events))
        try:
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "日本の首都はどこですか？"}],
            }
            await connection.conversation.item.create(item=item)  # type: ignore[arg-type]
            await connection.response.create(response={"output_modalities": ["text"]})
            (text_done,) = await events.until("response.done")
            await connection.response.create()  # the same question, now aloud
            await events.until("response.done", 2)
        finally:
            collector.cancel()
    assert text_done.response.status == "completed"
    answer = events.of("response.output_text.done")[0].text
    assert "東京" in answer
    spoken = events.of("response.done")[1].response
    assert spoken.status == "completed"
    assert audio_seconds(events, spoken.id) > 0.3


async def test_barge_in_cancels_the_answer_and_the_next_question_is_answered(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    wav, keyword = english_question
    events = await barge_in(base_url, wav)
    cut, answered = (event.response for event in events.of("response.done"))
    assert cut.status == "cancelled"
    assert cut.status_details.reason == "turn_detected"
    assert events.at("input_audio_buffer.speech_started") < events.at("response.done")
    # The barge-in took effect at once: cancelled within a fraction of a second of the speech being heard.
    assert events.at("response.done") - events.at("input_audio_buffer.speech_started") < 1.0
    assert cut.output[0].status == "incomplete"
    sent = "".join(
        e.delta for e in events.of("response.output_audio_transcript.delta") if e.response_id == cut.id
    )
    kept = events.of("conversation.item.retrieved")[0].item.content[0].transcript or ""
    assert len(kept) < len(sent.strip())  # the conversation keeps what was heard, not all that was made
    assert sent.strip().startswith(kept)
    assert keyword in events.of("conversation.item.input_audio_transcription.completed")[0].transcript.lower()
    assert answered.status == "completed"


async def test_bad_frames_and_unknown_events_are_error_events_and_the_session_goes_on(base_url: str) -> None:
    events = Events()
    async with connect(base_url) as connection:
        collector = asyncio.create_task(collect(connection, events))
        try:
            await connection.send_raw("{this is not json")
            await connection.send_raw(b"\x00\xffbinary")
            await connection.send_raw(json.dumps({"type": "no.such.event"}))
            await connection.send_raw(json.dumps({"type": "input_audio_buffer.append", "audio": "!!"}))
            bad_vad = {
                "type": "session.update",
                "session": {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
            }
            await connection.send_raw(json.dumps(bad_vad))
            await events.until("error", 5, within=30)
            await connection.session.update(session={"type": "realtime", "instructions": "Be brief."})
            (updated,) = await events.until("session.updated", within=30)
        finally:
            collector.cancel()
    codes = [event.error.code for event in events.of("error")]
    assert codes == [
        "INVALID_REQUEST",
        "INVALID_REQUEST",
        "INVALID_REQUEST",
        "INVALID_AUDIO_FORMAT",
        "INVALID_REQUEST",
    ]
    assert "semantic_vad" in events.of("error")[4].error.message
    assert updated.session.instructions == "Be brief."
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{base_url}/api/orchestrator/status", timeout=30)).status_code == 200


async def test_upgrades_are_refused_with_the_json_error(base_url: str) -> None:
    url = ws_url(base_url)
    with pytest.raises(InvalidStatus) as refused:
        async with raw_connect(url.replace("voice-dialogue", "tts-1")):
            pass
    assert refused.value.response.status_code == 404
    assert json.loads(refused.value.response.body or b"{}")["error"]["code"] == "MODEL_NOT_FOUND"
    with pytest.raises(InvalidStatus) as stray:
        async with raw_connect(base_url.replace("http://", "ws://") + "/v1/models"):
            pass
    assert stray.value.response.status_code == 404
    assert json.loads(stray.value.response.body or b"{}")["error"]["code"] == "NOT_FOUND"


async def test_sessions_over_the_limit_are_refused_and_a_vanished_client_frees_its_slot(
    base_url: str,
) -> None:
    url = ws_url(base_url)
    limit = 3  # max_realtime_sessions in the test app (tests/conftest.py)
    sockets = [await raw_connect(url) for _ in range(limit)]
    try:
        for socket in sockets:
            assert json.loads(await socket.recv())["type"] == "session.created"
        with pytest.raises(InvalidStatus) as refused:
            async with raw_connect(url):
                pass
        assert refused.value.response.status_code == 429
        body = json.loads(refused.value.response.body or b"{}")
        assert body["error"]["code"] == "TOO_MANY_REQUESTS"
        assert refused.value.response.headers["retry-after"]
        # One client vanishes mid-answer (no close frame): its slot and its answer's work are freed.
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "Tell me a story."}],
        }
        await sockets[0].send(json.dumps({"type": "conversation.item.create", "item": item}))
        await sockets[0].send(json.dumps({"type": "response.create"}))
        while json.loads(await sockets[0].recv())["type"] != "response.created":
            pass
        sockets[0].transport.abort()
        for _ in range(50):
            await asyncio.sleep(0.2)
            try:
                replacement = await raw_connect(url)
            except InvalidStatus:
                continue
            sockets[0] = replacement
            break
        else:
            pytest.fail("the vanished client's session slot was not freed within 10 s")
    finally:
        for socket in sockets:
            await socket.close()
    async with httpx.AsyncClient() as client:
        status = (await client.get(f"{base_url}/api/orchestrator/status", timeout=30)).json()
    assert status["active_dialogues"] == 0


async def test_a_message_over_the_size_limit_closes_with_1009(base_url: str) -> None:
    async with raw_connect(ws_url(base_url), max_size=None) as socket:
        assert json.loads(await socket.recv())["type"] == "session.created"
        await socket.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (9 * 1024 * 1024)}))
        error = json.loads(await socket.recv())
        assert error["error"]["code"] == "PAYLOAD_TOO_LARGE"
        with pytest.raises(ConnectionClosed) as closed:
            await socket.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


async def test_a_session_outlives_the_proxys_request_timeout(base_url: str) -> None:
    # Serve's proxy would cut the socket at `request_timeout_s` like a hung request; the edge turns that off
    # for the realtime route, whose sessions the app bounds itself (length, idle time).
    events = Events()
    async with connect(base_url) as connection:
        collector = asyncio.create_task(collect(connection, events))
        try:
            deadline = time.monotonic() + PROXY_TIMEOUT_S + 5.0
            updates = 0
            while time.monotonic() < deadline:  # a quiet user: a message every few seconds, no audio
                updates += 1
                await connection.session.update(
                    session={"type": "realtime", "instructions": f"Be brief {updates}."}
                )
                await events.until("session.updated", updates, within=30)
                await asyncio.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hello?"}]}
            await connection.conversation.item.create(item=item)  # type: ignore[arg-type]
            await connection.response.create(response={"output_modalities": ["text"]})
            (done,) = await events.until("response.done", within=60)
        finally:
            collector.cancel()
    assert events.at("response.done") > PROXY_TIMEOUT_S
    assert done.response.status == "completed"
    assert not events.of("error")


async def test_the_readme_example_runs_as_written(base_url: str, english_question: tuple[bytes, str]) -> None:
    code = readme_example("### The realtime socket", "python").replace(DOCUMENTED_URL, base_url)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        answer = await namespace["talk"](pcm24k(english_question[0]))
    assert len(answer) > 2 * 24_000 * 0.3  # over 0.3 s of speech
    assert printed.getvalue().strip()  # the reply's transcript, printed as it came
