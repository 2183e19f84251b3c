"""The one turn core and the one gate, with fakes: every route that speaks runs the same guarded turn, a turn
can be cut and remembers what was delivered, settings changed mid-turn do not reach it, the next sentence is
synthesised while this one is delivered, and a body is read before a dialogue slot is taken."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from fastapi import Request
from pydantic import SecretStr

from tests.unit.fakes import (
    SPEECH,
    FakeConversations,
    FakeLLM,
    FakeSTT,
    FakeTTS,
    SerialTTS,
    SlowTTS,
    fake_app,
    turn_core,
)
from voice_orchestrator.api.gate import Gate, presented_key
from voice_orchestrator.api.uploads import UploadLimits
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import (
    ReplyRequest,
    SpokenSentence,
    StreamDoneEvent,
    StreamTranscriptEvent,
)
from voice_orchestrator.settings import IngressSettings, Live
from voice_orchestrator.turn import speech_language

# A model that degenerates as the packaged Gemma 270M did: one good sentence, then a digit run to max_tokens.
BABBLE = "The moon is the largest planet. It is 3" + "0" * 400
GOOD = "The moon is the largest planet."
FILES = {"audio": ("q.wav", SPEECH, "application/octet-stream")}
SPOKEN_CHAT = {
    "model": "gpt-4o-audio-preview",
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "pcm16"},
    "messages": [{"role": "user", "content": "Tell me about the moon."}],
}


class CountingLLM(FakeLLM):
    """Counts the deltas it was asked for (a guard that cuts must stop pulling)."""

    def __init__(self, answer: str, delay: float = 0.0, chunk: int = 2) -> None:
        super().__init__(answer=answer, delay=delay, chunk=chunk)
        self.pulled = 0

    async def stream(self, request: ReplyRequest) -> Any:
        async for delta in super().stream(request):
            self.pulled += 1
            yield delta


async def _route_says(route: str, llm: CountingLLM, tts: FakeTTS) -> list[str]:
    app = fake_app(FakeSTT(text="Tell me about the moon.", language="en"), llm, tts)
    async with app.client as client:
        if route == "dialogue":
            response = await client.post("/api/orchestrator/dialogue", files=FILES)
        elif route == "stream":
            response = await client.post("/api/orchestrator/dialogue/stream", files=FILES)
        elif route == "chat":
            response = await client.post("/v1/chat/completions", json=SPOKEN_CHAT)
        else:
            response = await client.post("/v1/chat/completions", json={**SPOKEN_CHAT, "stream": True})
    assert response.status_code == 200, response.text
    return [request.text for request in tts.requests]


@pytest.mark.parametrize("route", ["dialogue", "stream", "chat", "chat-stream"])
async def test_a_looping_model_is_cut_the_same_way_on_every_route_that_speaks(route: str) -> None:
    llm, tts = CountingLLM(BABBLE), FakeTTS()
    assert await _route_says(route, llm, tts) == [GOOD]
    assert llm.closed
    assert llm.pulled < 40  # stopped at the digit run, not read to its end (~220 deltas)


@pytest.mark.parametrize("route", ["dialogue", "chat"])
async def test_nothing_speakable_is_the_fallback_on_every_route(route: str) -> None:
    tts = FakeTTS()
    assert await _route_says(route, CountingLLM("🙂 **"), tts) == ["Sorry, I don't have an answer to that."]


async def test_spoken_chat_streams_each_sentence_as_audio_with_its_transcript() -> None:
    answer = "The moon is bright. It orbits the earth."
    app = fake_app(llm=FakeLLM(answer=answer), tts=SlowTTS())
    async with app.client as client:
        response = await client.post(
            "/v1/chat/completions",
            json={**SPOKEN_CHAT, "stream": True, "stream_options": {"include_usage": True}},
        )
    lines = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    audio = [
        c["choices"][0]["delta"]["audio"]
        for c in chunks
        if c["choices"] and "audio" in c["choices"][0]["delta"]
    ]
    assert [piece["transcript"] for piece in audio] == ["The moon is bright.", "It orbits the earth."]
    assert all(len(base64.b64decode(piece["data"])) > 0 for piece in audio)
    assert chunks[-1]["usage"]["completion_tokens"] == len(answer.split())


async def test_an_interrupted_turn_stops_the_model_and_remembers_what_was_heard() -> None:
    llm = FakeLLM(answer="一つ目の文です。二つ目の文です。三つ目の文です。", delay=0.01)
    memory = FakeConversations()
    core = turn_core(llm=llm, tts=SlowTTS(), conversations=memory)
    question = ReplyRequest(text="三つ話して", language="ja")
    turn = core.reply(question, request_id="cut", session_id="s1")
    events = aiter(turn)
    first = await anext(events)
    assert isinstance(first, SpokenSentence)
    played_ms = first.speech.duration_s * 1000.0 / 2  # the listener heard half of the first sentence
    turn.interrupt(played_ms=played_ms)
    rest = [event async for event in events]
    assert len(rest) == 1
    done = rest[0]
    assert isinstance(done, StreamDoneEvent)
    assert done.metadata.interrupted
    assert done.metadata.output_text == "一つ目の"  # half of 「一つ目の文です。」
    assert llm.closed
    [stored] = memory.store.history("s1")
    assert (stored.user, stored.assistant) == ("三つ話して", "一つ目の")


async def test_a_client_that_leaves_still_leaves_its_question_and_the_delivered_part() -> None:
    llm = FakeLLM(answer="First sentence here. Second sentence here. Third one.", delay=0.01)
    memory = FakeConversations()
    core = turn_core(FakeSTT(text="Talk to me", language="en"), llm, SlowTTS(), memory)
    events = core.stream(SPEECH, None, "leave", session_id="s2")
    assert isinstance(await anext(events), StreamTranscriptEvent)
    assert isinstance(await anext(events), SpokenSentence)
    await events.aclose()  # type: ignore[attr-defined]
    for _ in range(50):  # stored by a task of its own
        if memory.store.history("s2"):
            break
        await asyncio.sleep(0.01)
    [stored] = memory.store.history("s2")
    assert (stored.user, stored.assistant) == ("Talk to me", "First sentence here.")
    assert llm.closed


async def test_settings_changed_mid_turn_do_not_reach_it() -> None:
    core = turn_core(llm=FakeLLM(answer="晴れです。明日も晴れです。", delay=0.03), llm_timeout_seconds=5)
    events = core.stream(SPEECH, None, "live")
    assert isinstance(await anext(events), StreamTranscriptEvent)
    core._live.current = IngressSettings(llm_timeout_seconds=0.01, max_reply_sentences=1)
    rest = [event async for event in events]
    done = rest[-1]
    assert isinstance(done, StreamDoneEvent)
    assert done.metadata.sentences == 2  # neither the new timeout nor the new sentence bound applied
    with pytest.raises(OrchestratorError) as caught:  # the next turn has them
        await core.run(SPEECH, None, "next")
    assert caught.value.code is OrchestratorErrorCode.PROCESSING_TIMEOUT


async def test_the_next_sentence_is_queued_at_the_stage_while_this_one_is_made() -> None:
    tts = SerialTTS(delay=0.05)
    core = turn_core(
        llm=FakeLLM(answer="First. Second. Third. Fourth.", chunk=50), tts=tts, max_reply_sentences=4
    )
    turn = core.reply(ReplyRequest(text="q", language="en"), request_id="ahead")
    events = aiter(turn)
    assert isinstance(await anext(events), SpokenSentence)
    assert tts.arrived[1] < tts.finished[0]  # no round trip between sentences: the second was waiting
    await asyncio.sleep(0.2)  # delivering the first sentence
    assert [request.text for request in tts.requests] == ["First.", "Second.", "Third."]  # two ahead, not all
    assert [e.text async for e in events if isinstance(e, SpokenSentence)] == ["Second.", "Third.", "Fourth."]


async def test_tts_time_counts_the_stage_at_work_not_calls_waiting_behind_each_other() -> None:
    tts = SerialTTS(delay=0.1)
    core = turn_core(llm=FakeLLM(answer="One. Two. Three. Four.", chunk=50), tts=tts, max_reply_sentences=4)
    result = await core.run(SPEECH, None, "busy")
    # four syntheses of 100 ms, one at a time: ≈ 400 ms; adding each call's own time would give ≈ 700
    assert 380 <= result.metadata.tts_ms < 600


async def test_cancelling_stops_every_call_in_flight() -> None:
    tts = SerialTTS(delay=5.0)
    spoken = turn_core(tts=tts).say(["One.", "Two.", "Three."], "en")
    for _ in range(50):
        if len(tts.requests) == 2:
            break
        await asyncio.sleep(0.01)
    assert [request.text for request in tts.requests] == ["One.", "Two."]
    await spoken.aclose()
    assert tts.cancelled == 2
    assert [item async for item in spoken] == []


def test_a_sentence_is_spoken_in_its_scripts_language() -> None:
    assert speech_language("東京です。", "en") == "ja"
    assert speech_language("Tokyo.", "ja") == "en"
    assert speech_language("Tokyo.", None) == "en"
    assert speech_language("Paris.", "FR") == "fr"


async def test_an_english_sentence_of_a_japanese_turn_goes_to_the_english_voice() -> None:
    tts = FakeTTS()
    await turn_core(llm=FakeLLM(answer="晴れです。Sunny."), tts=tts).run(SPEECH, None, "lang")
    assert [(request.text, request.language) for request in tts.requests] == [
        ("晴れです。", "ja"),
        ("Sunny.", "en"),
    ]


def _stalled_request() -> Request:
    async def receive() -> dict[str, Any]:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    return Request(scope, receive)


async def test_a_body_being_read_holds_an_upload_slot_not_a_dialogue_slot() -> None:
    gate = Gate(Live(IngressSettings(max_concurrent_dialogues=1)), _NoMeter())

    async def read(request: Request, limits: UploadLimits) -> bytes:
        return await request.body()

    reading = asyncio.create_task(gate.read(_stalled_request(), read))
    await asyncio.sleep(0.05)
    assert (gate.uploads.active, gate.dialogues.active) == (1, 0)
    # A normal request is admitted meanwhile, and then a full server refuses the next before reading.
    with gate.admit(), pytest.raises(OrchestratorError) as caught:
        await gate.read(_stalled_request(), read)
    assert caught.value.code is OrchestratorErrorCode.TOO_MANY_REQUESTS
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    assert (gate.uploads.active, gate.dialogues.active) == (0, 0)


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/audio/speech", {"model": "tts-1", "voice": "alloy", "input": "Hello there."}),
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]}),
    ],
)
async def test_v1_routes_take_a_slot_only_after_the_body(route: str, body: dict[str, Any]) -> None:
    app = fake_app(max_concurrent_dialogues=1)
    async with app.client as client:
        with app.gate.admit():  # the only slot is taken: refused, before the body is read
            refused = await client.post(route, json=body)
        served = await client.post(route, json=body)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TOO_MANY_REQUESTS"
    assert served.status_code == 200, served.text
    assert app.gate.dialogues.active == 0


async def test_the_v1_services_on_fake_stages() -> None:
    app = fake_app(FakeSTT(text="What is the capital of France?", language="en"), tts=SlowTTS())
    async with app.client as client:
        spoken = await client.post(
            "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": "One. Two.", "response_format": "pcm"},
        )
        heard = await client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1"},
            files={"file": ("q.wav", SPEECH, "application/octet-stream")},
        )
        text = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
        )
    assert spoken.status_code == 200
    assert [request.text for request in app.tts.requests] == ["One.", "Two."]
    assert len(spoken.content) == 2 * 24_000 * sum(len(t) for t in ("One.", "Two.")) * 1000 // 16_000
    assert heard.json()["text"] == "What is the capital of France?"
    assert text.json()["choices"][0]["message"]["content"] == "晴れです。"


def test_the_key_comes_as_a_bearer_header_or_a_browsers_websocket_subprotocol() -> None:
    assert presented_key({"authorization": "Bearer s3cret"}) == "s3cret"
    assert presented_key({"sec-websocket-protocol": "realtime, openai-insecure-api-key.s3cret"}) == "s3cret"
    assert presented_key({"authorization": "Basic x"}) is None
    gate = Gate(Live(IngressSettings(api_key=SecretStr("s3cret"))), _NoMeter())
    gate.authorize({"sec-websocket-protocol": "openai-insecure-api-key.s3cret"})
    with pytest.raises(OrchestratorError) as caught:
        gate.authorize({"sec-websocket-protocol": "openai-insecure-api-key.wrong"})
    assert caught.value.code is OrchestratorErrorCode.UNAUTHORIZED


class _NoMeter:
    def record(self, *_: Any) -> None:
        pass


async def test_a_sentence_synthesised_before_the_cut_is_never_delivered() -> None:
    core = turn_core(llm=FakeLLM(answer="First. Second. Third.", chunk=50), tts=SlowTTS())
    turn = core.reply(ReplyRequest(text="q", language="en"), request_id="cut-ahead")
    events = aiter(turn)
    assert isinstance(await anext(events), SpokenSentence)
    await asyncio.sleep(0.05)  # "Second." is synthesised and waiting
    turn.interrupt()
    rest = [event async for event in events]
    assert [type(event) for event in rest] == [StreamDoneEvent]
    assert rest[0].metadata.output_text == "First."  # type: ignore[union-attr]
