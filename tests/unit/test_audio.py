from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from tests.audio_factory import FORMATS, encode, float_wav, tone
from voice_orchestrator.audio import AudioLimits, decode_audio, encode_wav_pcm16
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode

LIMITS = AudioLimits(min_seconds=0.5, max_seconds=60.0)


def _code(data: bytes, limits: AudioLimits = LIMITS) -> OrchestratorErrorCode:
    with pytest.raises(OrchestratorError) as caught:
        decode_audio(data, limits)
    return caught.value.code


@pytest.mark.parametrize("kind", sorted(FORMATS))
def test_every_supported_format_decodes_to_16k_mono(kind: str) -> None:
    data = encode(tone(1.5, rate=44_100, channels=2), 44_100, kind)
    audio = decode_audio(data, LIMITS)
    assert audio.sample_rate == 16_000
    assert audio.samples.dtype == np.float32
    assert audio.samples.ndim == 1
    assert audio.duration_s == pytest.approx(1.5, abs=0.1)  # codecs add a little priming/padding
    assert audio.source_channels == 2
    # The tone survives: its energy is near a 0.3-amplitude sine's RMS.
    rms = float(np.sqrt(np.mean(audio.samples**2)))
    assert 0.15 < rms < 0.35  # FFmpeg downmixes identical channels with a -3 dB pan law


def test_format_is_decided_from_the_bytes_not_a_name() -> None:
    audio = decode_audio(encode(tone(1.0), 16_000, "flac"), LIMITS)
    assert audio.source_format == "flac"
    assert decode_audio(encode(tone(1.0), 16_000, "webm-opus"), LIMITS).source_format == "webm"


def test_downmix_and_resample_keep_the_signal() -> None:
    rate = 48_000
    left = tone(1.0, rate=rate, frequency=300.0)
    stereo = np.stack([left, left])
    audio = decode_audio(encode(stereo, rate, "wav-s16"), LIMITS)
    spectrum = np.abs(np.fft.rfft(audio.samples))
    peak_hz = np.argmax(spectrum) * 16_000 / len(audio.samples)
    assert peak_hz == pytest.approx(300.0, abs=5.0)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"hello, this is not audio at all" * 10,
        bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        b"RIFF\x00\x00\x00\x00WAVEfmt ",  # truncated header
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 200,
        b'{"audio": "base64..."}',
    ],
    ids=["empty", "text", "random", "truncated-wav", "png", "json"],
)
def test_garbage_is_invalid_audio(payload: bytes) -> None:
    assert _code(payload) is OrchestratorErrorCode.INVALID_AUDIO_FORMAT


def test_nan_samples_are_invalid() -> None:
    samples = tone(1.0)
    samples[100:200] = np.nan
    assert _code(float_wav(samples, 16_000)) is OrchestratorErrorCode.INVALID_AUDIO_FORMAT


def test_zero_rate_and_zero_channels_are_invalid() -> None:
    good = float_wav(tone(1.0), 16_000)
    zero_rate = good[:24] + struct.pack("<I", 0) + good[28:]
    zero_channels = good[:22] + struct.pack("<H", 0) + good[24:]
    assert _code(zero_rate) is OrchestratorErrorCode.INVALID_AUDIO_FORMAT
    assert _code(zero_channels) is OrchestratorErrorCode.INVALID_AUDIO_FORMAT


def test_too_short_and_too_long() -> None:
    assert _code(encode(tone(0.2), 16_000, "wav-s16")) is OrchestratorErrorCode.AUDIO_TOO_SHORT
    short_limit = AudioLimits(min_seconds=0.5, max_seconds=2.0)
    assert _code(encode(tone(3.0), 16_000, "wav-s16"), short_limit) is OrchestratorErrorCode.AUDIO_TOO_LONG
    # A stream without a declared duration is cut off while decoding.
    assert _code(encode(tone(3.0), 16_000, "ogg-opus"), short_limit) is OrchestratorErrorCode.AUDIO_TOO_LONG


def test_long_file_is_refused_from_its_header_without_decoding_it() -> None:
    # Ten minutes of 8 kHz 8-bit WAV (4.8 MB, well under the upload limit) against a 60 s limit.
    data = encode(tone(600.0, rate=8_000), 8_000, "wav-u8")
    with pytest.raises(OrchestratorError) as caught:
        decode_audio(data, LIMITS)
    assert caught.value.code is OrchestratorErrorCode.AUDIO_TOO_LONG
    assert caught.value.details is not None
    # The full length is reported: it was read from the header, not found by decoding up to the limit.
    assert caught.value.details["duration_s"] == pytest.approx(600.0, abs=0.5)


def test_lying_header_does_not_inflate_the_duration() -> None:
    # The header claims 3 hours; only one second of samples follows. The real length wins.
    body = (tone(1.0) * 32767).astype("<i2").tobytes()
    declared = 3 * 3600 * 16_000 * 2
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + declared)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, 16_000, 32_000, 2, 16)
        + b"data"
        + struct.pack("<I", declared)
    )
    assert decode_audio(header + body, LIMITS).duration_s == pytest.approx(1.0, abs=0.01)


def test_encode_wav_pcm16_roundtrip() -> None:
    samples = tone(0.5, rate=24_000)
    data = encode_wav_pcm16(samples, 24_000)
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 24_000
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    np.testing.assert_allclose(frames / 32767.0, samples, atol=1e-4)
