"""The realtime session's state machine on fake stages and a VAD that hears loudness: the event sequences of
the protocol, preemptive answers used and discarded, barge-in, truncation, manual turns, typed messages, and
every client mistake answered with an error event while the session goes on."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.unit.fakes import FakeConversations, FakeLLM, FakeSTT, RecordingMeter, SlowTTS, turn_core
from voice_orchestrator.api.gate import Gate
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.realtime.codecs import encode
from voice_orchestrator.realtime.session import RealtimeSession, SessionLimits
from voice_orchestrator.realtime.vad import FRAME_SAMPLES, TurnDetector
from voice_orchestrator.settings import IngressSettings, Live
from voice_orchestrator.turn import VoiceChoice

RATE = 24_000
CHUNK = RATE // 50  # 20 ms


class LoudnessDetector:
    """A stand-in for Silero: a frame is speech when it is loud."""

    def __init__(self) -> None:
        self._pending = np.zeros(0, dtype=np.float32)

    def probabilities(self, samples_16k: np.ndarray) -> list[float]:
        buffered = np.concatenate([self._pending, samples_16k])
        count = buffered.size // FRAME_SAMPLES
        self._pending = buffered[count * FRAME_SAMPLES :]
        frames = buffered[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
        return [0.9 if float(np.abs(frame).mean()) > 0.05 else 0.0 for frame in frames]


def typed(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


class Harness:
    def __init__(
        self,
        stt: FakeSTT | None = None,
        llm: FakeLLM | None = None,
        tts: SlowTTS | None = None,
        preemptive: bool = True,
        conversations: FakeConversations | None = None,
        memory_id: str | None = None,
        **settings: Any,
    ) -> None:
        self.stt, self.llm, self.tts = stt or FakeSTT(), llm or FakeLLM(), tts or SlowTTS()
        self.core = turn_core(self.stt, self.llm, self.tts, conversations, **settings)
        self.meter = RecordingMeter()
        self.gate = Gate(Live(IngressSettings(**settings)), self.meter)
        self.events: list[dict[str, Any]] = []
        self._sent = asyncio.Event()
        self.voices_asked: list[str] = []
        self.session = RealtimeSession(
            self.core,
            self._send,
            session_id="sess_test",
            limits=SessionLimits(
                max_audio_seconds=5.0,
                max_input_chars=200,
                max_tokens=64,
                preemptive=preemptive,
                preemptive_delay_ms=0,
            ),
            admit=self.gate.admit,
            voices=self._voices,
            meter=self.meter,
            usage=self.llm.usage,
            memory_id=memory_id,
            detector=lambda config: TurnDetector(config, LoudnessDetector()),
        )

    async def _send(self, event: dict[str, Any]) -> None:
        json.dumps(event)  # every event is JSON
        self.events.append(event)
        self._sent.set()

    async def until(self, happened: Callable[[], bool], within: float = 5.0) -> None:
        """Wait (bounded) until `happened()` holds, looking again after each event sent."""
        async with asyncio.timeout(within):
            while not happened():
                self._sent.clear()
                await self._sent.wait()

    async def _voices(self, name: str) -> VoiceChoice:
        self.voices_asked.append(name)
        if name == "nobody":
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST, "Unknown voice", details={"field": "voice"}
            )
        return lambda _text: None

    async def client(self, kind: str, **fields: Any) -> None:
        await self.session.handle(json.dumps({"type": kind, **fields}))

    async def ask(self, text: str, **response: Any) -> None:
        """A typed user message, then `response.create` (with `response` options when given)."""
        await self.client("conversation.item.create", item=typed(text))
        await self.client("response.create", **({"response": response} if response else {}))

    async def audio(self, seconds: float, loud: bool, fmt: str = "audio/pcm", rate: int = RATE) -> None:
        """`seconds` of speech (loud noise) or silence, in 20 ms appends, ten times faster than real time."""
        rng = np.random.default_rng(0)
        step = rate // 50
        for _ in range(round(seconds * 50)):
            samples = rng.uniform(-0.5, 0.5, step).astype(np.float32) if loud else np.zeros(step, np.float32)
            data = base64.b64encode(encode(samples, fmt)).decode()  # type: ignore[arg-type]
            await self.client("input_audio_buffer.append", audio=data)
            await asyncio.sleep(0.002)

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    async def done(self, count: int = 1) -> list[dict[str, Any]]:
        await self.until(lambda: len(self.of("response.done")) >= count)
        return self.of("response.done")

    def errors(self) -> list[str]:
        return [event["error"]["code"] for event in self.of("error")]

    def metric(self, name: str) -> int:
        return sum(1 for recorded, _ in self.meter.records if recorded == name)


RESPONSE_SEQUENCE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio_transcript.delta",
    "response.output_audio.delta",
]
RESPONSE_END = [
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "conversation.item.done",
    "response.done",
]


def without_deltas(types: list[str]) -> list[str]:
    out: list[str] = []
    for kind in types:
        if kind.endswith(".delta") and out and out[-1] == kind:
            continue
        out.append(kind)
    return out


async def test_a_spoken_turn_is_answered_with_the_protocol_events_in_order() -> None:
    h = Harness(llm=FakeLLM(answer="晴れです。"))
    await h.session.start()
    await h.audio(1.0, loud=True)
    await h.audio(1.0, loud=False)
    (done,) = await h.done()
    types = without_deltas(h.types())
    assert types[:2] == ["session.created", "input_audio_buffer.speech_started"]
    assert types[2:9] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.delta",
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.done",
        "response.created",
    ]
    assert types[9:] == RESPONSE_SEQUENCE[1:] + RESPONSE_END
    started = h.of("input_audio_buffer.speech_started")[0]
    stopped = h.of("input_audio_buffer.speech_stopped")[0]
    assert started["item_id"] == stopped["item_id"] == h.of("input_audio_buffer.committed")[0]["item_id"]
    assert 0 <= started["audio_start_ms"] <= 100  # speech from the start, padding clipped at 0
    assert 960 <= stopped["audio_end_ms"] <= 1060
    completed = h.of("conversation.item.input_audio_transcription.completed")[0]
    assert completed["transcript"] == "今日の天気は？"
    assert done["response"]["status"] == "completed"
    assert done["response"]["output"][0]["content"][0]["transcript"] == "晴れです。"
    assert done["response"]["usage"]["output_tokens"] >= 1
    assert "end_of_speech_to_first_audio_ms" in done["response"]["metadata"]
    audio = b"".join(base64.b64decode(event["delta"]) for event in h.of("response.output_audio.delta"))
    assert len(audio) == 2 * round(len("晴れです。") * 1000 * RATE / 16_000)  # SlowTTS: 1000 samples a char
    # The transcript made during the pause was the turn's: one recognition, and its answer was used.
    assert len(h.stt.calls) == 1
    assert h.metric("voice_realtime_preemptive_answers") == 1
    assert ("voice_realtime_preemptive_answers", 1.0) in h.meter.records
    assert h.gate.dialogues.active == 0


async def test_speech_that_resumes_discards_the_preemptive_answer() -> None:
    h = Harness(stt=FakeSTT(text="first words"), llm=FakeLLM(answer="Sure."), tts=SlowTTS(delay=0.05))
    await h.session.start()
    await h.audio(0.6, loud=True)
    await h.audio(0.3, loud=False)  # a pause shorter than silence_duration_ms (500)
    h.stt.text = "first words and more"
    await h.audio(0.6, loud=True)
    await h.audio(1.0, loud=False)
    (done,) = await h.done()
    assert h.types().count("response.created") == 1
    assert h.types().count("input_audio_buffer.speech_started") == 1  # one turn, paused once
    assert (
        h.of("conversation.item.input_audio_transcription.completed")[0]["transcript"]
        == "first words and more"
    )
    assert done["response"]["status"] == "completed"
    discarded = [tags for name, tags in h.meter.records if name == "voice_realtime_preemptive_answers"]
    assert len(discarded) == 2  # one thrown away at "more", one used
    assert h.llm.requests[-1].text == "first words and more"
    assert h.gate.dialogues.active == 0


async def test_manual_turns_commit_and_answer_on_request() -> None:
    h = Harness(
        stt=FakeSTT(text="What is the capital of Japan?", language="en"), llm=FakeLLM(answer="Tokyo.")
    )
    await h.session.start()
    await h.client(
        "session.update", session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    )
    assert h.of("session.updated")[0]["session"]["audio"]["input"]["turn_detection"] is None
    await h.audio(1.0, loud=True)
    await h.audio(0.5, loud=False)
    assert "input_audio_buffer.speech_started" not in h.types()
    await h.client("input_audio_buffer.commit")
    await h.client("response.create")
    (done,) = await h.done()
    assert h.of("input_audio_buffer.committed")
    assert h.of("conversation.item.input_audio_transcription.completed")[0]["transcript"].startswith("What")
    assert done["response"]["output"][0]["content"][0]["transcript"] == "Tokyo."
    assert h.stt.calls[0][0] == pytest.approx(1.5, abs=0.05)  # the whole buffer was committed


async def test_a_typed_message_is_answered_with_the_conversation_as_history() -> None:
    h = Harness(llm=FakeLLM(answer="Tokyo."))
    await h.session.start()
    await h.ask("Capital of Japan?")
    await h.done()
    h.llm.answer = "About 14 million."
    await h.ask("And its population?")
    await h.done(2)
    last = h.llm.requests[-1]
    assert last.text == "And its population?"
    assert [(turn.user, turn.assistant) for turn in last.history] == [("Capital of Japan?", "Tokyo.")]
    assert h.types().count("conversation.item.added") == 4  # two user items, two answers


async def test_instructions_become_the_system_message() -> None:
    h = Harness(llm=FakeLLM(answer="Ahoy."))
    await h.session.start()
    await h.client("session.update", session={"type": "realtime", "instructions": "Talk like a pirate."})
    await h.ask("Hello")
    await h.done()
    messages = h.llm.requests[-1].messages
    assert messages is not None
    assert (messages[0].role, messages[0].content) == ("system", "Talk like a pirate.")
    assert (messages[-1].role, messages[-1].content) == ("user", "Hello")


async def test_barge_in_cancels_the_answer_and_the_memory_keeps_the_cut() -> None:
    long_answer = "First sentence here. Second sentence here. Third sentence here."
    h = Harness(
        stt=FakeSTT(text="Tell me", language="en"), llm=FakeLLM(answer=long_answer), tts=SlowTTS(delay=0.5)
    )
    await h.session.start()
    await h.audio(0.6, loud=True)
    await h.audio(0.6, loud=False)
    await h.until(lambda: bool(h.of("response.output_audio.delta")))
    await asyncio.sleep(0.4)  # the listener hears a third of the first sentence (1.25 s); the third is made
    h.stt.text = "Stop"
    await h.audio(0.2, loud=True)  # the user cuts in
    (cancelled,) = await h.done()
    assert cancelled["response"]["status"] == "cancelled"
    assert cancelled["response"]["status_details"]["reason"] == "turn_detected"
    started = h.types().index("input_audio_buffer.speech_started", 2)
    assert h.types().index("response.done") > started  # the client hears of the speech first, then the cut
    cut = h.session.items[1]
    assert cut.text
    assert cut.text != long_answer
    assert long_answer.startswith(cut.text)
    assert cancelled["response"]["output"][0]["status"] == "incomplete"
    await h.audio(0.6, loud=True)
    await h.audio(0.8, loud=False)
    await h.done(2)
    assert h.llm.requests[-1].history[-1].assistant == cut.text
    assert h.metric("voice_realtime_barge_ins") == 1
    assert h.gate.dialogues.active == 0


async def test_the_clients_truncate_keeps_what_it_played() -> None:
    h = Harness(llm=FakeLLM(answer="One two three four."))
    await h.session.start()
    await h.ask("Count")
    (done,) = await h.done()
    item_id = done["response"]["output"][0]["id"]
    seconds = len("One two three four.") * 1000 / 16_000
    await h.client(
        "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=int(seconds * 500)
    )
    truncated = h.of("conversation.item.truncated")[0]
    assert truncated["item_id"] == item_id
    assert h.session.items[1].text == "One two"
    await h.client("conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=999_999)
    assert h.errors() == ["INVALID_REQUEST"]


async def test_text_only_answers_synthesise_nothing() -> None:
    h = Harness(llm=FakeLLM(answer="Tokyo."))
    await h.session.start()
    await h.client("session.update", session={"type": "realtime", "output_modalities": ["text"]})
    await h.ask("Capital?")
    (done,) = await h.done()
    assert h.of("response.output_text.done")[0]["text"] == "Tokyo."
    assert not h.of("response.output_audio.delta")
    assert not h.tts.requests
    assert done["response"]["output_modalities"] == ["text"]


async def test_g711_input_is_heard() -> None:
    h = Harness()
    await h.session.start()
    await h.client(
        "session.update", session={"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcmu"}}}}
    )
    await h.audio(0.8, loud=True, fmt="audio/pcmu", rate=8000)
    await h.audio(0.8, loud=False, fmt="audio/pcmu", rate=8000)
    await h.done()
    assert h.of("input_audio_buffer.speech_started")


async def test_beta_session_fields_are_understood() -> None:
    h = Harness()
    await h.session.start()
    beta = {
        "modalities": ["text"],
        "input_audio_format": "g711_alaw",
        "turn_detection": None,
        "voice": "jf_alpha",
    }
    await h.client("session.update", session=beta)
    session = h.of("session.updated")[0]["session"]
    assert session["output_modalities"] == ["text"]
    assert session["audio"]["input"]["format"] == {"type": "audio/pcma"}
    assert session["audio"]["input"]["turn_detection"] is None
    assert session["audio"]["output"]["voice"] == "jf_alpha"


def ev(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields})


def audio_input(**fields: Any) -> str:
    return ev("session.update", session={"audio": {"input": fields}})


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", "INVALID_REQUEST"),
        (b"\x00\x01binary", "INVALID_REQUEST"),
        ('["a list"]', "INVALID_REQUEST"),
        ('{"type": "no.such.event"}', "INVALID_REQUEST"),
        ('{"type": "input_audio_buffer.append", "audio": "***"}', "INVALID_AUDIO_FORMAT"),
        ('{"type": "input_audio_buffer.append"}', "INVALID_REQUEST"),
        ('{"type": "input_audio_buffer.commit"}', "INVALID_REQUEST"),
        ('{"type": "response.cancel"}', "INVALID_REQUEST"),
        ('{"type": "response.create"}', "INVALID_REQUEST"),
        ('{"type": "conversation.item.delete", "item_id": "nope"}', "INVALID_REQUEST"),
        ('{"type": "conversation.item.truncate", "item_id": "nope", "audio_end_ms": 5}', "INVALID_REQUEST"),
        (
            ev("conversation.item.create", item={"type": "message", "role": "user", "content": []}),
            "INVALID_REQUEST",
        ),
        (audio_input(turn_detection={"type": "semantic_vad"}), "INVALID_REQUEST"),
        (audio_input(format={"type": "audio/opus"}), "INVALID_REQUEST"),
        (audio_input(turn_detection={"threshold": 7}), "INVALID_REQUEST"),
        (
            '{"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}}',
            "INVALID_REQUEST",
        ),
        ('{"type": "session.update", "session": {"type": "transcription"}}', "INVALID_REQUEST"),
        ('{"type": "output_audio_buffer.clear"}', "INVALID_REQUEST"),
    ],
)
async def test_client_mistakes_are_error_events_and_the_session_goes_on(
    message: str | bytes, code: str
) -> None:
    h = Harness(llm=FakeLLM(answer="Still here."))
    await h.session.start()
    await h.session.handle(message)
    assert h.errors() == [code]
    error = h.of("error")[0]["error"]
    assert error["message"]
    assert error["type"] == "invalid_request_error"
    await h.ask("Hello?")
    (done,) = await h.done()
    assert done["response"]["status"] == "completed"


async def test_the_error_event_echoes_the_clients_event_id() -> None:
    h = Harness()
    await h.session.start()
    await h.client("response.cancel", event_id="evt_client_1")
    assert h.of("error")[0]["error"]["event_id"] == "evt_client_1"


async def test_a_second_response_while_one_runs_is_refused() -> None:
    h = Harness(llm=FakeLLM(answer="Slow answer."), tts=SlowTTS(delay=0.3))
    await h.session.start()
    await h.ask("Hi")
    await h.until(lambda: bool(h.of("response.created")))
    await h.client("response.create")
    assert h.errors() == ["INVALID_REQUEST"]
    await h.client("response.cancel")
    (done,) = await h.done()
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"


async def test_a_failing_stage_fails_the_response_not_the_session() -> None:
    failure = OrchestratorError(
        OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE, "The LLM stage is unavailable."
    )
    h = Harness(llm=FakeLLM(error=failure))
    await h.session.start()
    await h.ask("Hi")
    (done,) = await h.done()
    assert done["response"]["status"] == "failed"
    assert done["response"]["status_details"]["error"]["code"] == "LLM_SERVICE_UNAVAILABLE"
    h.llm.error = None
    await h.client("response.create")
    assert (await h.done(2))[1]["response"]["status"] == "completed"


async def test_a_full_server_refuses_the_response_with_an_error_event() -> None:
    h = Harness(max_concurrent_dialogues=1)
    await h.session.start()
    held = h.gate.admit()
    await h.ask("Hi")
    await h.until(lambda: bool(h.of("error")))
    assert h.errors() == ["TOO_MANY_REQUESTS"]
    assert h.of("error")[0]["error"]["retry_after"] >= 1
    held.release()


async def test_closing_stops_the_answer_and_gives_the_slot_back() -> None:
    h = Harness(llm=FakeLLM(answer="A long answer. With sentences."), tts=SlowTTS(delay=0.5))
    await h.session.start()
    await h.ask("Hi")
    await h.until(lambda: bool(h.of("response.created")))
    async with asyncio.timeout(2):
        await h.session.close()
    assert h.gate.dialogues.active == 0
    assert len(h.tts.requests) <= 2


async def test_audio_past_the_limit_is_an_error_once_in_manual_mode() -> None:
    h = Harness()
    await h.session.start()
    await h.client(
        "session.update", session={"type": "realtime", "audio": {"input": {"turn_detection": None}}}
    )
    await h.audio(6.0, loud=False)
    assert h.errors() == ["AUDIO_TOO_LONG"]
    await h.client("input_audio_buffer.clear")
    assert h.of("input_audio_buffer.cleared")


async def test_speech_that_never_pauses_ends_its_turn_at_the_limit() -> None:
    h = Harness()
    await h.session.start()
    await h.audio(5.5, loud=True)  # max_audio_seconds is 5
    (done,) = await h.done()
    stopped = h.of("input_audio_buffer.speech_stopped")[0]
    assert 4900 <= stopped["audio_end_ms"] <= 5100
    assert done["response"]["status"] == "completed"
    assert h.stt.calls[0][0] <= 5.0 + 0.05  # at most one 20 ms append past the limit


async def test_speech_before_an_answer_starts_folds_both_turns_into_one_answer() -> None:
    h = Harness(stt=FakeSTT(text="Tokyo", language="en", delay=0.4), preemptive=False)
    await h.session.start()
    await h.audio(0.5, loud=True)
    await h.audio(0.6, loud=False)  # the turn ends; its transcription takes 0.4 s
    h.stt.text = "and Kyoto"
    await h.audio(0.5, loud=True)  # ...and the user goes on before the answer started
    await h.audio(1.0, loud=False)
    await h.done()
    await asyncio.sleep(0.5)
    assert h.types().count("input_audio_buffer.committed") == 2
    assert h.types().count("response.created") == 1
    assert h.llm.requests[-1].text == "Tokyo and Kyoto"


async def test_a_named_session_is_kept_in_the_conversations_stage_as_it_was_heard() -> None:
    conversations = FakeConversations()
    first = Harness(
        llm=FakeLLM(answer="One two three four."), conversations=conversations, memory_id="kitchen"
    )
    await first.session.start()
    await first.ask("Count")
    (done,) = await first.done()
    # The client played half the answer, then the user left: the session keeps the half that was heard.
    seconds = len("One two three four.") * 1000 / 16_000
    item_id = done["response"]["output"][0]["id"]
    await first.client("conversation.item.truncate", item_id=item_id, audio_end_ms=int(seconds * 500))
    await first.session.close()
    assert [(turn.user, turn.assistant) for turn in conversations.store.history("kitchen")] == [
        ("Count", "One two")
    ]
    # A new socket naming the same session goes on from there (and so would the REST routes).
    second = Harness(llm=FakeLLM(answer="Big."), conversations=conversations, memory_id="kitchen")
    await second.session.start()
    await second.ask("How big?")
    await second.done()
    assert [(turn.user, turn.assistant) for turn in second.llm.requests[-1].history] == [("Count", "One two")]
    await second.session.close()
    assert len(conversations.store.history("kitchen")) == 2


async def test_a_truncate_past_the_audio_is_refused_and_cancels_nothing() -> None:
    h = Harness(llm=FakeLLM(answer="A long answer. With sentences."), tts=SlowTTS(delay=0.3))
    await h.session.start()
    await h.ask("Hi")
    await h.until(lambda: bool(h.of("response.output_audio.delta")))
    item_id = h.of("response.output_item.added")[0]["item"]["id"]
    await h.client("conversation.item.truncate", item_id=item_id, audio_end_ms=60_000)
    assert h.errors() == ["INVALID_REQUEST"]
    (done,) = await h.done()
    assert done["response"]["status"] == "completed"
