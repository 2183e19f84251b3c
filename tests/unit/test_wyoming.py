"""The Wyoming door's pure parts: bounded framing, audio conversion and limits, the streamed synthesis."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from wyoming.event import Event

from voice_orchestrator.api.gate import Admission
from voice_orchestrator.audio import AudioLimits
from voice_orchestrator.errors import OrchestratorError
from voice_orchestrator.protocol import SpeechAudio
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.wyoming.audio_in import PcmFormat, SpeechInput
from voice_orchestrator.wyoming.framing import FrameError, FrameLimits, read_event
from voice_orchestrator.wyoming.protocol import SynthesizeData, base_language, parse
from voice_orchestrator.wyoming.synthesis import SAMPLES_PER_CHUNK, SpeechStream, audio_events


def stream_of(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=1024)
    reader.feed_data(data)
    reader.feed_eof()
    return reader


def frame(header: dict[str, object], data: bytes = b"", payload: bytes = b"") -> bytes:
    return json.dumps(header).encode() + b"\n" + data + payload


async def test_an_event_with_data_and_payload_is_read_whole() -> None:
    data = json.dumps({"rate": 16000}).encode()
    raw = frame(
        {"type": "audio-chunk", "data": {"width": 2}, "data_length": len(data), "payload_length": 4}, data
    )
    reader = stream_of(raw + b"abcd")
    event = await read_event(reader)
    assert event == Event(type="audio-chunk", data={"width": 2, "rate": 16000}, payload=b"abcd")
    assert await read_event(reader) is None  # the end of the stream, between events


@pytest.mark.parametrize(
    "raw",
    [
        b"not json\n",
        b"[1, 2]\n",
        b'{"data": {}}\n',  # no type
        b'{"type": "x", "data": [1]}\n',
        frame({"type": "x", "payload_length": -1}),
        frame({"type": "x", "payload_length": "10"}),
        frame({"type": "x", "payload_length": 10**9}),  # over the payload bound
        frame({"type": "x", "data_length": 10**6}),
        frame({"type": "x", "payload_length": 10}) + b"short",  # the stream ends inside the event
        b'{"type": "x"',  # ... or inside its header
        b"x" * 5000 + b"\n",  # a header over the reader's limit
        frame({"type": "x", "data_length": 3}, b"[1]"),
    ],
)
async def test_malformed_frames_are_frame_errors(raw: bytes) -> None:
    with pytest.raises(FrameError):
        await read_event(stream_of(raw), FrameLimits(payload_bytes=1024, data_bytes=1024))


def test_pcm_of_every_width_and_channel_count_becomes_mono_floats() -> None:
    stereo16 = np.array([[16384, -16384], [32767, 32767]], dtype="<i2").tobytes()
    assert PcmFormat(16000, 2, 2).samples(stereo16 + b"\x01") == pytest.approx([0.0, 0.99997], abs=1e-4)
    assert PcmFormat(16000, 1, 1).samples(bytes([128, 255, 0])) == pytest.approx([0.0, 0.9921875, -1.0])
    assert PcmFormat(16000, 4, 1).samples(np.array([2**30], "<i4").tobytes()) == pytest.approx([0.5])


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"rate": 16000, "width": 3, "channels": 1}, "width"),
        ({"rate": 100, "width": 2, "channels": 1}, "rate"),
        ({"rate": 16000, "width": 2, "channels": 0}, "channels"),
        ({"rate": "16000", "width": 2, "channels": 1}, "rate"),
        ({"rate": True, "width": 2, "channels": 1}, "rate"),
        ({"width": 2, "channels": 1}, "rate"),
    ],
)
def test_bad_audio_formats_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(OrchestratorError) as refused:
        PcmFormat.of(data)
    assert refused.value.code == "INVALID_AUDIO_FORMAT"
    assert refused.value.details == {"field": field}


def test_speech_input_resamples_and_is_bounded_as_it_grows() -> None:
    speech = SpeechInput(PcmFormat(48000, 2, 1), AudioLimits(0.5, 2.0))
    second = (np.sin(np.arange(48000) / 10) * 8000).astype("<i2").tobytes()
    speech.add({}, second)  # the chunk's format comes from audio-start
    decoded = speech.finish()
    assert decoded.sample_rate == 16000
    assert abs(len(decoded.samples) - 16000) <= 32
    growing = SpeechInput(PcmFormat(16000, 2, 1), AudioLimits(0.5, 2.0))
    growing.add({}, bytes(64000))  # 2 s: at the bound
    with pytest.raises(OrchestratorError) as refused:
        growing.add({}, bytes(2))
    assert refused.value.code == "AUDIO_TOO_LONG"
    short = SpeechInput(PcmFormat(16000, 2, 1), AudioLimits(0.5, 2.0))
    short.add({}, bytes(3200))
    with pytest.raises(OrchestratorError, match="shorter"):
        short.finish()


def test_event_fields_are_checked_and_regions_dropped() -> None:
    with pytest.raises(OrchestratorError) as refused:
        parse(SynthesizeData, "synthesize", {"text": 5})
    assert refused.value.details == {"field": "text", "event": "synthesize"}
    assert parse(SynthesizeData, "synthesize", {"text": "Hi.", "context": {}}).text == "Hi."
    assert [base_language(code) for code in ("en-US", "ja_JP", "ja", None)] == ["en", "ja", "ja", None]


def test_audio_is_sent_in_chunks_of_1024_samples_at_the_asked_rate() -> None:
    speech = SpeechAudio(samples=np.zeros(2500, np.float32), sample_rate=16000, voice="v")
    events = audio_events(speech, 16000)
    assert [len(event.payload or b"") for event in events] == [2048, 2048, 2 * (2500 - 2 * SAMPLES_PER_CHUNK)]
    assert len(b"".join(event.payload or b"" for event in audio_events(speech, 24000))) == 2 * 3750


class _Slots:
    def __init__(self) -> None:
        self.active = 0

    def acquire(self) -> None:
        self.active += 1

    def release(self) -> None:
        self.active -= 1


class _Gate:
    def __init__(self) -> None:
        self.dialogues = _Slots()

    def record_in_flight(self) -> None:
        pass


async def test_a_stream_speaks_whole_sentences_as_they_come_and_releases_its_slot() -> None:
    gate = _Gate()
    sent: list[Event] = []
    spoken: list[str] = []

    async def speak(text: str) -> tuple[SpeechAudio, float]:
        spoken.append(text)
        return SpeechAudio(samples=np.zeros(1000, np.float32), sample_rate=16000, voice="v"), 1.0

    async def send(event: Event) -> None:
        sent.append(event)

    admission = Admission(gate, gate.dialogues)  # type: ignore[arg-type]
    stream = SpeechStream(speak, send, SentenceSplitter(40, 10), 1000, admission)
    stream.add("It is sunny. And tomor")
    for _ in range(20):  # the first sentence is spoken before any more text arrives
        await asyncio.sleep(0)
    assert spoken == ["It is sunny."]
    stream.add("row, rain.")
    await stream.finish()
    assert spoken == ["It is sunny.", "And tomorrow, rain."]
    assert [event.type for event in sent] == ["audio-start", "audio-chunk", "audio-stop"] * 2
    assert gate.dialogues.active == 0


async def test_a_stream_over_the_text_limit_is_refused_and_ignores_the_rest() -> None:
    gate = _Gate()

    async def speak(text: str) -> tuple[SpeechAudio, float]:
        raise AssertionError("nothing is spoken")

    async def send(event: Event) -> None:
        pass

    admission = Admission(gate, gate.dialogues)  # type: ignore[arg-type]
    stream = SpeechStream(speak, send, SentenceSplitter(), 10, admission)
    with pytest.raises(OrchestratorError, match="over 10 characters"):
        stream.add("A long text that is.")
    stream.add("More.")  # ignored
    await stream.finish()
    assert stream.failed
    assert gate.dialogues.active == 0
