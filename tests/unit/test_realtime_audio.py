"""The realtime socket's audio: G.711 and PCM16 codecs, streaming resampling, and server VAD turn-taking."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import get_args

import numpy as np
import numpy.typing as npt
import pytest

from voice_orchestrator.audio import resample
from voice_orchestrator.protocol import FloatArray
from voice_orchestrator.realtime.codecs import (
    SAMPLE_RATES,
    AudioFormat,
    InputDecoder,
    StreamResampler,
    decode_frames,
    encode,
    to_pcm16,
)
from voice_orchestrator.realtime.vad import (
    FRAME_MS,
    FRAME_SAMPLES,
    SpeechDetector,
    TurnDetector,
    VadConfig,
    VadEvent,
)

FORMATS: tuple[AudioFormat, ...] = get_args(AudioFormat)
G711: tuple[AudioFormat, ...] = ("audio/pcmu", "audio/pcma")
CHUNK_16K = 320  # 20 ms, what clients usually send


def _audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module: ModuleType = pytest.importorskip("audioop", reason="audioop is gone (Python 3.13+)")
    return module


def _every_pcm16() -> npt.NDArray[np.int16]:
    return np.arange(-32768, 32768).astype("<i2")


# --- codecs ---------------------------------------------------------------------------------------------


def test_formats_and_rates() -> None:
    assert SAMPLE_RATES == {"audio/pcm": 24_000, "audio/pcmu": 8_000, "audio/pcma": 8_000}
    assert set(SAMPLE_RATES) == set(FORMATS)


def test_pcm16_round_trip_is_exact() -> None:
    data = _every_pcm16().tobytes()
    samples = decode_frames(data, "audio/pcm")
    assert samples.dtype == np.float32
    assert samples.min() == -1.0
    assert samples.max() < 1.0
    assert encode(samples, "audio/pcm") == data


def test_encode_clips_and_silences_nan() -> None:
    loud = np.array([2.0, -2.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 0.5], dtype=np.float32)
    assert to_pcm16(loud).tolist() == [32767, -32768, 32767, -32768, 0, 32767, -32768, 16384]
    assert encode(loud, "audio/pcm") == to_pcm16(loud).tobytes()
    assert encode(loud[:2], "audio/pcmu") == encode(np.array([1.0, -1.0], np.float32), "audio/pcmu")
    assert encode(np.zeros(0, np.float32), "audio/pcma") == b""


def test_odd_pcm16_is_refused_without_a_decoder() -> None:
    with pytest.raises(ValueError, match="InputDecoder"):
        decode_frames(b"\x00\x01\x02", "audio/pcm")


@pytest.mark.parametrize("fmt", FORMATS)
def test_input_decoder_keeps_split_samples(fmt: AudioFormat) -> None:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, 4001 if fmt != "audio/pcm" else 4000, dtype=np.uint8).tobytes()
    cuts = sorted(rng.choice(np.arange(1, len(data)), 40, replace=False).tolist())
    decoder = InputDecoder(fmt)
    assert decoder.sample_rate == SAMPLE_RATES[fmt]
    pieces = [decoder.feed(data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    np.testing.assert_array_equal(np.concatenate(pieces), decode_frames(data, fmt))


def test_input_decoder_reset_drops_half_a_sample() -> None:
    decoder = InputDecoder("audio/pcm")
    assert decoder.feed(b"\x01").size == 0
    decoder.reset()
    np.testing.assert_array_equal(decoder.feed(b"\x00\x40"), [0.5])


@pytest.mark.parametrize(
    ("fmt", "codes", "pcm16"),
    [
        ("audio/pcmu", [0xFF, 0x7F, 0x00, 0x80, 0xFE], [0, 0, -32124, 32124, 8]),
        ("audio/pcma", [0xD5, 0x55, 0x2A, 0xAA], [8, -8, -32256, 32256]),
    ],
)
def test_g711_reference_values(fmt: AudioFormat, codes: list[int], pcm16: list[int]) -> None:
    np.testing.assert_array_equal(decode_frames(bytes(codes), fmt) * 32768, pcm16)


def test_g711_silence_encodes_to_the_zero_code() -> None:
    assert encode(np.zeros(3, np.float32), "audio/pcmu") == b"\xff\xff\xff"
    assert encode(np.zeros(3, np.float32), "audio/pcma") == b"\xd5\xd5\xd5"


@pytest.mark.parametrize("fmt", G711)
def test_g711_codes_survive_a_round_trip(fmt: AudioFormat) -> None:
    codes = bytes(range(256))
    again = encode(decode_frames(codes, fmt), fmt)
    # μ-law has two zeros (+0 and -0); both decode to 0, which encodes as +0.
    changed = {code for code, back in zip(codes, again, strict=True) if code != back}
    assert changed == ({0x7F} if fmt == "audio/pcmu" else set())


@pytest.mark.parametrize("fmt", G711)
def test_g711_error_is_its_quantisation_step(fmt: AudioFormat) -> None:
    x = np.linspace(-1.0, 1.0, 200_001, dtype=np.float32)
    error = np.abs(decode_frames(encode(x, fmt), fmt) - x)
    # Logarithmic steps: 16 per segment, each segment double the last, so at most ~1/32 of the magnitude
    # (half a step), and a few PCM16 steps around zero; the top of μ-law's range clips at 32124.
    top = 32124 / 32768 if fmt == "audio/pcmu" else 1.0
    bound = np.abs(x) / 31 + 18 / 32768 + np.maximum(np.abs(x) - top, 0)
    assert (error <= bound).all()
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(8000) / 8000)).astype(np.float32)
    noise = decode_frames(encode(tone, fmt), fmt) - tone
    snr_db = 10 * np.log10(np.mean(tone**2) / np.mean(noise**2))
    assert snr_db > 35  # G.711's ~38 dB


@pytest.mark.parametrize("fmt", G711)
def test_g711_matches_audioop(fmt: AudioFormat) -> None:
    audioop = _audioop()
    to_linear, to_code = (
        (audioop.ulaw2lin, audioop.lin2ulaw) if fmt == "audio/pcmu" else (audioop.alaw2lin, audioop.lin2alaw)
    )
    codes = bytes(range(256))
    expected = np.frombuffer(to_linear(codes, 2), dtype="<i2") / 32768.0
    np.testing.assert_array_equal(decode_frames(codes, fmt), expected.astype(np.float32))
    every = _every_pcm16()
    assert encode((every / 32768.0).astype(np.float32), fmt) == to_code(every.tobytes(), 2)
    sweep = np.random.default_rng(2).uniform(-1.2, 1.2, 50_000).astype(np.float32)
    assert encode(sweep, fmt) == to_code(to_pcm16(sweep).tobytes(), 2)


def _chunks(samples: FloatArray, sizes: list[int]) -> Iterator[FloatArray]:
    start, index = 0, 0
    while start < samples.size:
        size = sizes[index % len(sizes)]
        yield samples[start : start + size]
        start, index = start + size, index + 1


@pytest.mark.parametrize(("from_rate", "to_rate"), [(24_000, 16_000), (8_000, 16_000), (16_000, 24_000)])
def test_stream_resampler_chunked_equals_whole(from_rate: int, to_rate: int) -> None:
    rng = np.random.default_rng(3)
    t = np.arange(from_rate) / from_rate
    signal = (0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    whole = resample(signal, from_rate, to_rate)
    stream = StreamResampler(from_rate, to_rate)
    pieces = [stream.feed(chunk) for chunk in _chunks(signal, [from_rate // 50, 1, 7, 333, 0, 2048])]
    chunked = np.concatenate([*pieces, stream.flush()])
    assert chunked.size == whole.size == to_rate
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    # After a flush it is a new stream, with the same result again.
    again = np.concatenate([stream.feed(signal[:4000]), stream.feed(signal[4000:]), stream.flush()])
    np.testing.assert_allclose(again, whole, atol=1e-5)


def test_stream_resampler_same_rate_passes_through() -> None:
    stream = StreamResampler(16_000, 16_000)
    samples = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(stream.feed(samples), samples)
    assert stream.flush().size == 0


def test_stream_resampler_reset_forgets_the_filter() -> None:
    signal = np.random.default_rng(4).uniform(-0.5, 0.5, 4800).astype(np.float32)
    stream = StreamResampler(24_000, 16_000)
    stream.feed(np.ones(480, np.float32))
    stream.reset()
    out = np.concatenate([stream.feed(signal), stream.flush()])
    np.testing.assert_allclose(out, resample(signal, 24_000, 16_000), atol=1e-5)


# --- the turn-taking state machine, on scripted probabilities -----------------------------------------------


class ScriptedDetector:
    """Plays back one probability per complete 512-sample frame, like Silero, then silence."""

    def __init__(self, probabilities: list[float]) -> None:
        self._script = list(probabilities)
        self._pending = 0

    def probabilities(self, samples_16k: FloatArray) -> list[float]:
        self._pending += samples_16k.size
        count, self._pending = divmod(self._pending, FRAME_SAMPLES)
        played, self._script = self._script[:count], self._script[count:]
        return played + [0.0] * (count - len(played))


def run_script(
    probabilities: list[float], config: VadConfig | None = None, chunk: int = CHUNK_16K
) -> list[tuple[VadEvent, int]]:
    """Every event with the stream position (ms) when it came out, feeding the script's audio in chunks."""
    detector = TurnDetector(config or VadConfig(), ScriptedDetector(probabilities))
    total = len(probabilities) * FRAME_SAMPLES
    out: list[tuple[VadEvent, int]] = []
    for start in range(0, total, chunk):
        out += [
            (event, detector.position_ms)
            for event in detector.feed(np.zeros(min(chunk, total - start), np.float32))
        ]
    return out


def kinds(events: list[tuple[VadEvent, int]]) -> list[tuple[str, int]]:
    return [(event.kind, event.at_ms) for event, _ in events]


SPEECH, SILENCE, BETWEEN = 0.9, 0.05, 0.4  # BETWEEN: under 0.5, above the 0.35 release threshold


def test_speech_starts_after_min_speech_dated_to_its_first_frame() -> None:
    events = run_script([SILENCE] * 5 + [SPEECH] * 10)
    assert kinds(events) == [("speech_started", 5 * FRAME_MS)]
    # Known after the third speech frame (96 ms), i.e. once 8 frames (256 ms) are in: the 13th 20 ms chunk.
    assert events[0][1] == 260


def test_a_click_is_not_speech() -> None:
    assert run_script([SPEECH, SPEECH] + [SILENCE] * 20) == []
    # A run must be consecutive: a frame under the threshold, even above the release one, starts it over.
    events = run_script([SPEECH, SPEECH, BETWEEN, SPEECH, SPEECH, SILENCE, SPEECH, SPEECH, SPEECH, SPEECH])
    assert kinds(events) == [("speech_started", 6 * FRAME_MS)]


def test_pause_then_resumed() -> None:
    script = [SPEECH] * 5 + [SILENCE] * 5 + [SPEECH] * 3 + [BETWEEN] * 3 + [SPEECH]
    assert kinds(run_script(script)) == [
        ("speech_started", 0),
        ("pause", 5 * FRAME_MS),
        ("resumed", 10 * FRAME_MS),
    ]


def test_pause_then_stopped_after_the_silence_duration() -> None:
    script = [SILENCE] * 2 + [SPEECH] * 6 + [SILENCE] * 30
    events = run_script(script)
    assert kinds(events) == [("speech_started", 64), ("pause", 256), ("speech_stopped", 256)]
    # 500 ms of silence is 16 frames (512 ms): the one that ends at 256 + 512 = 768 ms, in the chunk to 780.
    assert events[-1][1] == 780


def test_probabilities_between_the_thresholds_keep_the_state() -> None:
    # Speaking: a wavering probability is still speech. Paused: it is still silence, and the clock runs.
    script = [SPEECH] * 4 + [BETWEEN] * 20 + [SILENCE] + [BETWEEN] * 15 + [SILENCE] * 5
    events = kinds(run_script(script))
    assert events == [("speech_started", 0), ("pause", 24 * FRAME_MS), ("speech_stopped", 24 * FRAME_MS)]


def test_a_pause_is_reported_once_and_each_new_pause_again() -> None:
    script = ([SPEECH] * 4 + [SILENCE] * 3) * 3 + [SILENCE] * 20
    events = kinds(run_script(script))
    assert [kind for kind, _ in events] == [
        "speech_started",
        *["pause", "resumed"] * 2,
        "pause",
        "speech_stopped",
    ]
    assert events[-1] == ("speech_stopped", 18 * FRAME_MS)


def test_turns_follow_each_other() -> None:
    turn = [SPEECH] * 5 + [SILENCE] * 20
    events = kinds(run_script(turn * 2))
    assert events == [
        ("speech_started", 0),
        ("pause", 160),
        ("speech_stopped", 160),
        ("speech_started", 800),
        ("pause", 960),
        ("speech_stopped", 960),
    ]


@pytest.mark.parametrize("chunk", [1, 100, 333, 512, 1000, 4097, 100_000])
def test_positions_do_not_depend_on_chunk_size(chunk: int) -> None:
    script = [SILENCE] * 7 + [SPEECH] * 9 + [SILENCE] * 4 + [SPEECH] * 2 + [SILENCE] * 40
    assert kinds(run_script(script, chunk=chunk)) == kinds(run_script(script, chunk=FRAME_SAMPLES))
    assert kinds(run_script(script, chunk=chunk)) == [
        ("speech_started", 224),
        ("pause", 512),
        ("resumed", 640),
        ("pause", 704),
        ("speech_stopped", 704),
    ]


def test_position_counts_every_sample() -> None:
    detector = TurnDetector(VadConfig(), ScriptedDetector([]))
    for size in (1, 15, 16, 511, 7):
        detector.feed(np.zeros(size, np.float32))
    assert detector.position_ms == (1 + 15 + 16 + 511 + 7) // 16


def test_reset_goes_idle_and_keeps_the_position() -> None:
    detector = TurnDetector(VadConfig(), ScriptedDetector([SPEECH] * 10 + [SILENCE] * 2 + [SPEECH] * 3))
    assert [e.kind for e in detector.feed(np.zeros(10 * FRAME_SAMPLES, np.float32))] == ["speech_started"]
    assert detector.in_speech
    detector.reset()
    assert not detector.in_speech
    assert detector.position_ms == 320
    events = detector.feed(np.zeros(5 * FRAME_SAMPLES, np.float32))
    assert events == [VadEvent("speech_started", 12 * FRAME_MS)]


def test_in_speech_covers_pauses() -> None:
    detector = TurnDetector(VadConfig(), ScriptedDetector([SPEECH] * 3 + [SILENCE] * 3))
    detector.feed(np.zeros(4 * FRAME_SAMPLES, np.float32))
    assert detector.in_speech  # paused, not stopped
    detector.feed(np.zeros(FRAME_SAMPLES * 20, np.float32))
    assert not detector.in_speech


def test_reconfigure_applies_from_the_next_frame() -> None:
    detector = TurnDetector(VadConfig(), ScriptedDetector([SPEECH] * 3 + [SILENCE] * 20))
    assert [e.kind for e in detector.feed(np.zeros(6 * FRAME_SAMPLES, np.float32))] == [
        "speech_started",
        "pause",
    ]
    detector.reconfigure(VadConfig(silence_duration_ms=200))  # 7 frames: 3 already heard
    events = []
    for _ in range(4):
        events += detector.feed(np.zeros(FRAME_SAMPLES, np.float32))
    assert events == [VadEvent("speech_stopped", 96)]
    assert detector.config.silence_duration_ms == 200


def test_zero_durations() -> None:
    config = VadConfig(min_speech_ms=0, silence_duration_ms=0)
    assert kinds(run_script([SILENCE, SPEECH, SILENCE], config)) == [
        ("speech_started", 32),
        ("pause", 64),
        ("speech_stopped", 64),
    ]


def test_config_checks_and_release_threshold() -> None:
    assert VadConfig().release_threshold == pytest.approx(0.35)
    assert VadConfig(threshold=0.1).release_threshold == 0.01
    for bad in ({"threshold": 0.0}, {"threshold": 1.5}, {"silence_duration_ms": -1}, {"min_speech_ms": -5}):
        with pytest.raises(ValueError, match=r"threshold|negative"):
            VadConfig(**bad)


# --- the real Silero model on real speech ------------------------------------------------------------------


@functools.cache
def _spoken() -> tuple[FloatArray, int, int]:
    """A Japanese question by pyopenjtalk at 16 kHz, and its first and last sample above a speech level."""
    pyopenjtalk = pytest.importorskip("pyopenjtalk", reason="the embedded extra is not installed")
    samples, rate = pyopenjtalk.tts("東京の人口はどれくらいですか")
    speech = resample((np.asarray(samples) / 32768.0).astype(np.float32), int(rate), 16_000)
    loud = np.flatnonzero(np.abs(speech) > 0.02)
    return speech, int(loud[0]), int(loud[-1])


@pytest.fixture
def spoken() -> tuple[FloatArray, int, int]:
    pytest.importorskip("onnxruntime", reason="the embedded extra is not installed")
    return _spoken()


def _feed(detector: TurnDetector, audio: FloatArray, chunk: int = CHUNK_16K) -> list[tuple[VadEvent, int]]:
    out: list[tuple[VadEvent, int]] = []
    for start in range(0, audio.size, chunk):
        out += [(event, detector.position_ms) for event in detector.feed(audio[start : start + chunk])]
    return out


def _check_one_turn(events: list[tuple[VadEvent, int]], onset_ms: float, end_ms: float) -> None:
    names = [event.kind for event, _ in events]
    assert names[0] == "speech_started"
    assert names[-2:] == ["pause", "speech_stopped"]
    assert names[1:-2] == ["pause", "resumed"] * ((len(names) - 3) // 2)  # short gaps inside the sentence
    started, (stopped, stopped_when) = events[0][0], events[-1]
    assert abs(started.at_ms - onset_ms) <= 150
    assert abs(stopped.at_ms - end_ms) <= 200
    # Reported once the silence lasted silence_duration_ms (16 frames), in the 20 ms chunk that completes it.
    assert 512 <= stopped_when - stopped.at_ms <= 512 + FRAME_MS + 20


@pytest.mark.parametrize("noise", [0.0, 0.003])
def test_silero_hears_one_turn(spoken: tuple[FloatArray, int, int], noise: float) -> None:
    speech, first, last = spoken
    lead = 8_000  # 0.5 s
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(16_000, np.float32)])
    audio += np.random.default_rng(5).normal(0, noise, audio.size).astype(np.float32)
    detector = TurnDetector(VadConfig())
    events = _feed(detector, audio)
    _check_one_turn(events, (lead + first) / 16, (lead + last) / 16)
    assert not detector.in_speech


@pytest.mark.parametrize("fmt", FORMATS)
def test_silero_hears_a_turn_through_the_wire_formats(
    spoken: tuple[FloatArray, int, int], fmt: AudioFormat
) -> None:
    speech, first, last = spoken
    rate = SAMPLE_RATES[fmt]
    lead = 8_000
    audio = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(16_000, np.float32)])
    wire = encode(resample(audio, 16_000, rate), fmt)
    decoder, to_16k, detector = InputDecoder(fmt), StreamResampler(rate, 16_000), TurnDetector(VadConfig())
    message = rate // 50 * (2 if fmt == "audio/pcm" else 1) + 1  # 20 ms and a byte: samples split across
    events: list[tuple[VadEvent, int]] = []
    for start in range(0, len(wire), message):
        heard = detector.feed(to_16k.feed(decoder.feed(wire[start : start + message])))
        events += [(event, detector.position_ms) for event in heard]
    _check_one_turn(events, (lead + first) / 16, (lead + last) / 16)


@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: np.zeros(n, np.float32),
        lambda rng, n: rng.normal(0, 0.003, n).astype(np.float32),
        lambda rng, n: rng.normal(0, 0.01, n).astype(np.float32),
    ],
    ids=["silence", "white-noise-0.003", "white-noise-0.01"],
)
def test_silero_hears_nothing_in_silence_or_noise(
    make: Callable[[np.random.Generator, int], FloatArray],
) -> None:
    pytest.importorskip("onnxruntime", reason="the embedded extra is not installed")
    detector = TurnDetector(VadConfig())
    assert _feed(detector, make(np.random.default_rng(6), 3 * 16_000)) == []
    assert detector.position_ms == 3000


def test_silero_state_is_per_stream(spoken: tuple[FloatArray, int, int]) -> None:
    speech = spoken[0]
    noise = np.random.default_rng(7).normal(0, 0.01, speech.size).astype(np.float32)
    alone = SpeechDetector().probabilities(speech)
    assert len(alone) == speech.size // FRAME_SAMPLES
    # Two streams on the one shared session, interleaved in uneven chunks: each hears only its own audio.
    a, b = SpeechDetector(), SpeechDetector()
    heard_a: list[float] = []
    for chunk_a, chunk_b in zip(
        _chunks(speech, [CHUNK_16K, 77]), _chunks(noise, [CHUNK_16K, 77]), strict=True
    ):
        heard_a += a.probabilities(chunk_a)
        b.probabilities(chunk_b)
    np.testing.assert_allclose(heard_a, alone, atol=1e-4)
    assert max(alone) > 0.9
    a.reset()
    np.testing.assert_allclose(a.probabilities(speech), alone, atol=1e-4)
