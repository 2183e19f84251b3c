"""Streaming replies sentence by sentence, the sentence splitter, and conversation memory — with fakes."""

from __future__ import annotations

import asyncio

import pytest

from tests.unit.fakes import SPEECH, FakeConversations, FakeLLM, FakeSTT, FakeTTS, SlowTTS, turn_core
from voice_orchestrator.conversation import ConversationStore
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import (
    SpokenSentence,
    StreamDoneEvent,
    StreamTranscriptEvent,
    Turn,
)
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.turn import TurnCore, TurnEvent, normalize_session_id


def split(deltas: list[str], soft: int = 40) -> list[str]:
    splitter = SentenceSplitter(soft)
    out: list[str] = []
    for delta in deltas:
        out += splitter.feed(delta)
    return out + splitter.flush()


@pytest.mark.parametrize(
    ("deltas", "sentences"),
    [
        (list("晴れです。明日は雨でしょう！"), ["晴れです。", "明日は雨でしょう！"]),
        (["本当ですか？", "はい"], ["本当ですか？", "はい"]),
        (list("「本当？」と聞きました。次です。"), ["「本当？」と聞きました。", "次です。"]),
        (["そうですね…", "たぶん。"], ["そうですね…", "たぶん。"]),
        (["一行目\n二行目"], ["一行目", "二行目"]),
        (["It costs 3", ".5 dollars. Dr", ". Smith agrees", "! Really?", " Yes"],
         ["It costs 3.5 dollars.", "Dr. Smith agrees!", "Really?", "Yes"]),
        (["He said \"Hi.\" Then left."], ["He said \"Hi.\"", "Then left."]),
        (["Wait... what?"], ["Wait...", "what?"]),
        (["See example.com for more."], ["See example.com for more."]),
    ],
)  # fmt: skip
def test_splitter_finds_japanese_and_english_sentences(deltas: list[str], sentences: list[str]) -> None:
    assert split(deltas) == sentences


def test_splitter_emits_a_sentence_before_the_reply_ends() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("晴れです") == []
    # Ready as soon as the next character shows the end is final.
    assert splitter.feed("。明") == ["晴れです。"]
    assert splitter.flush() == ["明"]


def test_splitter_cuts_a_long_sentence_at_a_comma() -> None:
    long = "東京は日本の首都で、人口がとても多く、世界でも有数の大都市の一つとして知られていて、"
    long += "とても大きいです。"
    chunks = split([long], soft=20)
    assert len(chunks) == 2
    assert chunks[0].endswith("、")
    assert "".join(chunks) == long
    assert split([long]) == [long[: long.index("知られていて、") + 7], "とても大きいです。"]


def test_the_first_chunk_may_end_at_an_earlier_comma_than_the_rest() -> None:
    reply = "東京は日本の首都で、人口がとても多いです。大阪は西にあり、食べ物がおいしい町です。"
    splitter = SentenceSplitter(soft_split_chars=40, first_soft_split_chars=8)
    chunks = splitter.feed(reply) + splitter.flush()
    # Only the first sentence is cut at its comma (9 characters in); the second, as short, is not.
    second = "大阪は西にあり、食べ物がおいしい町です。"
    assert chunks == ["東京は日本の首都で、", "人口がとても多いです。", second]
    # A comma before the first threshold does not cut: 「はい、」 alone would sound clipped.
    assert split(["はい、そうです。"], soft=40) == ["はい、そうです。"]
    splitter = SentenceSplitter(soft_split_chars=40, first_soft_split_chars=8)
    assert splitter.feed("はい、そうです。") == []
    assert splitter.flush() == ["はい、そうです。"]
    # English too: the first clause goes as soon as its comma is followed by more text.
    splitter = SentenceSplitter(soft_split_chars=40, first_soft_split_chars=10)
    assert splitter.feed("In the morning, it will") == ["In the morning,"]


def test_a_comma_inside_a_number_is_no_pause() -> None:
    # Streamed as a model writes it: "12," arrives before "345" (the comma waits for what follows).
    splitter = SentenceSplitter(soft_split_chars=40, first_soft_split_chars=10)
    deltas = ["Mount Everest is about 29,", "032 feet tall, and K2", " is second."]
    chunks = [chunk for delta in deltas for chunk in splitter.feed(delta)] + splitter.flush()
    assert chunks == ["Mount Everest is about 29,032 feet tall,", "and K2 is second."]
    population = "人口は約14,000,000人で、とても多いです。"
    assert split([population], soft=5) == ["人口は約14,000,000人で、", "とても多いです。"]


async def test_the_first_spoken_chunk_follows_the_first_chunk_setting() -> None:
    reply = "東京は日本の首都で、人口がとても多いです。"
    tts = SlowTTS()
    await collect(pipeline(FakeLLM(reply), tts, stream_first_chunk_chars=8).stream(SPEECH, "ja", "f1"))
    assert [r.text for r in tts.requests] == ["東京は日本の首都で、", "人口がとても多いです。"]
    tts = SlowTTS()
    await collect(pipeline(FakeLLM(reply), tts, stream_first_chunk_chars=40).stream(SPEECH, "ja", "f2"))
    assert [r.text for r in tts.requests] == [reply]


def pipeline(
    llm: FakeLLM,
    tts: FakeTTS | None = None,
    conversations: FakeConversations | None = None,
    **settings: object,
) -> TurnCore:
    return turn_core(FakeSTT(), llm, tts or SlowTTS(), conversations, **settings)


async def collect(stream: object) -> list[TurnEvent]:
    assert hasattr(stream, "__aiter__")
    return [item async for item in stream]


async def test_stream_speaks_each_sentence_in_order_then_reports() -> None:
    tts = SlowTTS()
    llm = FakeLLM("晴れです。明日は**雨**でしょう！😀")
    items = await collect(pipeline(llm, tts).stream(SPEECH, None, "r1"))
    transcript, first, second, done = items
    assert isinstance(transcript, StreamTranscriptEvent)
    assert transcript.text == "今日の天気は？"
    assert transcript.language == "ja"
    assert isinstance(first, SpokenSentence)
    assert isinstance(second, SpokenSentence)
    assert (first.index, first.text, second.index, second.text) == (0, "晴れです。", 1, "明日は雨でしょう！")
    assert [r.text for r in tts.requests] == ["晴れです。", "明日は雨でしょう！"]
    assert isinstance(done, StreamDoneEvent)
    meta = done.metadata
    assert meta.output_text == "晴れです。明日は雨でしょう！"
    assert meta.sentences == 2
    assert meta.output_duration_s == pytest.approx((5 + 9) * 1000 / 16_000, abs=0.01)
    assert 0 < meta.time_to_first_audio_ms <= meta.total_ms


async def test_first_audio_comes_while_the_model_is_still_writing() -> None:
    # 10 ms per 2-character delta: the second sentence arrives ~0.1 s after the first.
    answer = "晴れです。明日は雨が降るでしょう。週末は曇りでしょう。"  # three different sentences
    llm = FakeLLM(answer, delay=0.01)
    items = await collect(pipeline(llm, SlowTTS(delay=0.01)).stream(SPEECH, "ja", "r2"))
    done = items[-1]
    assert isinstance(done, StreamDoneEvent)
    meta = done.metadata
    assert meta.sentences == 3
    # The first sentence was spoken before the model finished writing the reply.
    assert meta.time_to_first_audio_ms < meta.stt_ms + meta.llm_ms
    assert llm.closed


async def test_an_empty_reply_speaks_the_fallback() -> None:
    items = await collect(pipeline(FakeLLM("😀 **")).stream(SPEECH, None, "r3"))
    spoken = [item for item in items if isinstance(item, SpokenSentence)]
    assert [s.text for s in spoken] == ["すみません、うまく答えられませんでした。"]
    assert isinstance(items[-1], StreamDoneEvent)


async def test_a_model_failing_mid_reply_ends_the_stream_with_its_code() -> None:
    llm = FakeLLM("晴れです。明日は雨でしょう。", error=RuntimeError("boom"), fail_after=8)
    received: list[TurnEvent] = []

    async def consume() -> None:
        async for item in pipeline(llm).stream(SPEECH, None, "r4"):
            received.append(item)

    with pytest.raises(OrchestratorError) as caught:
        await consume()
    assert caught.value.code is OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE
    assert [type(item).__name__ for item in received] == ["StreamTranscriptEvent", "SpokenSentence"]


async def test_a_slow_model_times_out_mid_stream() -> None:
    llm = FakeLLM("晴れです。" * 20, delay=0.05)
    with pytest.raises(OrchestratorError) as caught:
        await collect(pipeline(llm, llm_timeout_seconds=0.2).stream(SPEECH, None, "r5"))
    assert caught.value.code is OrchestratorErrorCode.PROCESSING_TIMEOUT
    assert llm.closed


async def test_leaving_the_stream_early_stops_the_model() -> None:
    llm = FakeLLM("晴れです。" * 50, delay=0.01)
    stream = pipeline(llm).stream(SPEECH, None, "r6")
    async for item in stream:
        if isinstance(item, SpokenSentence):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    await asyncio.sleep(0.05)
    assert llm.closed


async def test_errors_before_the_transcript_raise_before_any_event() -> None:
    stream = pipeline(FakeLLM()).stream(b"not audio", None, "r7")
    with pytest.raises(OrchestratorError) as caught:
        await collect(stream)
    assert caught.value.code is OrchestratorErrorCode.INVALID_AUDIO_FORMAT


async def test_a_session_carries_context_to_the_next_turn() -> None:
    conversations = FakeConversations()
    llm = FakeLLM("富士山です。")
    first = pipeline(llm, conversations=conversations)
    await first.run(SPEECH, None, "t1", session_id="s-1")
    await collect(first.stream(SPEECH, None, "t2", session_id="s-1"))
    await first.run(SPEECH, None, "t3")  # stateless: no history, nothing stored
    await first.run(SPEECH, None, "t4", session_id="other")
    histories = [request.history for request in llm.requests]
    assert histories[0] == []
    assert histories[1] == [Turn(user="今日の天気は？", assistant="富士山です。")]
    assert histories[2] == []
    assert histories[3] == []
    assert len(conversations.store.history("s-1")) == 2


async def test_a_broken_session_store_does_not_fail_the_dialogue() -> None:
    class Broken(FakeConversations):
        async def history(self, session_id: str) -> list[Turn]:
            raise RuntimeError("store down")

    result = await pipeline(FakeLLM(), conversations=Broken()).run(SPEECH, None, "t5", session_id="s")
    assert result.metadata.output_text == "晴れです。"


@pytest.mark.parametrize("value", [None, "", "  "])
def test_no_session_id_is_stateless(value: str | None) -> None:
    assert normalize_session_id(value) is None


def test_session_ids_are_short_tokens() -> None:
    assert normalize_session_id(" 3f2a-b1_c ") == "3f2a-b1_c"
    for bad in ("a" * 129, "今日", "a b", "../x"):
        with pytest.raises(OrchestratorError) as caught:
            normalize_session_id(bad)
        assert caught.value.code is OrchestratorErrorCode.INVALID_REQUEST


def test_store_keeps_the_last_turns_and_expires_idle_sessions() -> None:
    now = [0.0]
    store = ConversationStore(
        max_turns=2, ttl_seconds=10, max_sessions=2, max_turn_chars=5, clock=lambda: now[0]
    )
    for n in range(3):
        store.append("a", Turn(user=f"q{n}", assistant=f"a{n}-long-answer"))
    assert store.history("a") == [Turn(user="q1", assistant="a1-lo"), Turn(user="q2", assistant="a2-lo")]
    now[0] = 5.0
    store.append("b", Turn(user="x", assistant="y"))
    now[0] = 12.0  # "a" idle for 12 s, "b" for 7 s
    assert store.history("a") == []
    assert len(store.history("b")) == 1
    assert store.delete("b")
    assert not store.delete("b")


def test_store_evicts_the_least_recently_used_session_when_full() -> None:
    store = ConversationStore(max_turns=2, ttl_seconds=100, max_sessions=2)
    store.append("a", Turn(user="1", assistant="1"))
    store.append("b", Turn(user="2", assistant="2"))
    store.append("a", Turn(user="3", assistant="3"))
    store.append("c", Turn(user="4", assistant="4"))
    assert len(store) == 2
    assert store.history("b") == []
    assert len(store.history("a")) == 2


async def test_the_requested_voice_reaches_every_synthesis() -> None:
    tts = SlowTTS()
    await pipeline(FakeLLM("晴れです。"), tts).run(SPEECH, None, "v1", voice="jm_kumo")
    await collect(pipeline(FakeLLM("晴れです。明日も。"), tts).stream(SPEECH, None, "v2", voice="jm_kumo"))
    assert [r.voice for r in tts.requests] == ["jm_kumo"] * 3
