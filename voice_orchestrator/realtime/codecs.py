"""The Realtime protocol's audio formats: raw bytes in and out of a socket, float32 samples inside.

`audio/pcm` is 24 kHz mono PCM16 little-endian; `audio/pcmu` and `audio/pcma` are G.711 μ-law and A-law at
8 kHz, one byte a sample. G.711 goes through 256-entry decode and 65,536-entry encode tables built once with
numpy, bit-exact with CPython's `audioop` (removed in Python 3.13), i.e. Sun's g711.c. Its A-law is also
bit-exact with the ITU G.191 reference code; its μ-law rounds negative PCM16 the other way when cutting it to
14 bits, so 508 of the 65,536 inputs (4 right at each negative decision level) get the neighbouring code.

Floats map to PCM16 as round(x * 32768), clipped, the exact inverse of decoding's x / 32768, so audio that
went in comes back out unchanged. (`voice_orchestrator.audio.encode_wav_pcm16` truncates x * 32767 instead:
fine for a file, but it would drift by one step on every trip through a socket.)

Chunks off a socket are short (20 ms is typical), and `voice_orchestrator.audio.resample` resamples each call
from scratch: its filter sees silence past both ends of the chunk, so chunk by chunk it puts clicks at every
boundary (up to 0.01 of full scale on a 440 Hz tone at 24 -> 16 kHz, 0.05 at 8 -> 16 kHz) and a chunk of a
few samples yields none at all. `StreamResampler` keeps one FFmpeg resampler for the whole stream instead:
chunked, its output is the same as `resample` of the whole stream.
"""

from __future__ import annotations

from typing import Literal

import av
import numpy as np
import numpy.typing as npt

from voice_orchestrator.protocol import FloatArray

AudioFormat = Literal["audio/pcm", "audio/pcmu", "audio/pcma"]

SAMPLE_RATES: dict[AudioFormat, int] = {"audio/pcm": 24_000, "audio/pcmu": 8_000, "audio/pcma": 8_000}

_Table = npt.NDArray[np.int32]


def _every_pcm16() -> _Table:
    """Every PCM16 value, in the order of its bit pattern read as uint16 (how encode tables are indexed)."""
    return np.arange(65_536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _ulaw_tables() -> tuple[_Table, _Table]:
    """(code -> PCM16, PCM16 bit pattern -> code) for μ-law, after Sun's g711.c as audioop has it."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF  # μ-law codes are sent with every bit inverted
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    decode = np.where(u & 0x80, 0x84 - magnitude, magnitude - 0x84)

    value = _every_pcm16() >> 2  # 14-bit
    mask = np.where(value < 0, 0x7F, 0xFF)
    biased = np.minimum(np.abs(value), 8159) + (0x84 >> 2)
    segment = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), biased)
    code = (np.minimum(segment, 7) << 4) | ((biased >> (np.minimum(segment, 7) + 1)) & 0x0F)
    encode = np.where(segment >= 8, 0x7F, code) ^ mask
    return decode.astype(np.int32), encode.astype(np.int32)


def _alaw_tables() -> tuple[_Table, _Table]:
    """(code -> PCM16, PCM16 bit pattern -> code) for A-law (even bits inverted on the wire)."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (a & 0x70) >> 4
    step = (a & 0x0F) << 4
    magnitude = np.where(segment == 0, step + 8, (step + 0x108) << np.maximum(segment - 1, 0))
    decode = np.where(a & 0x80, magnitude, -magnitude)

    value = _every_pcm16() >> 3  # 13-bit
    mask = np.where(value >= 0, 0xD5, 0x55)
    folded = np.where(value >= 0, value, -value - 1)  # at most 0xFFF: always within the 8 segments
    segment = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), folded)
    quantised = (folded >> np.maximum(segment, 1)) & 0x0F
    encode = ((segment << 4) | quantised) ^ mask
    return decode.astype(np.int32), encode.astype(np.int32)


def _build_tables() -> dict[AudioFormat, tuple[FloatArray, npt.NDArray[np.uint8]]]:
    tables: dict[AudioFormat, tuple[FloatArray, npt.NDArray[np.uint8]]] = {}
    builders: dict[AudioFormat, tuple[_Table, _Table]] = {
        "audio/pcmu": _ulaw_tables(),
        "audio/pcma": _alaw_tables(),
    }
    for fmt, (decode, encode) in builders.items():
        tables[fmt] = ((decode / 32768.0).astype(np.float32), encode.astype(np.uint8))
    return tables


_G711 = _build_tables()


def to_pcm16(samples: FloatArray) -> npt.NDArray[np.int16]:
    """Floats (clipped to [-1, 1]; NaN is silence) as PCM16: round(x * 32768), the inverse of x / 32768."""
    clean = np.nan_to_num(np.asarray(samples, dtype=np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    scaled = np.rint(np.clip(clean, -1.0, 1.0) * np.float32(32768.0))
    pcm: npt.NDArray[np.int16] = np.clip(scaled, -32768, 32767).astype("<i2")
    return pcm


def decode_frames(data: bytes, fmt: AudioFormat) -> FloatArray:
    """Float32 samples in [-1, 1] at the format's rate (`SAMPLE_RATES`).

    PCM16 needs an even number of bytes: a socket may split a sample between two messages, which
    `InputDecoder` handles; here an odd length is a `ValueError`.
    """
    if fmt == "audio/pcm":
        if len(data) % 2:
            raise ValueError("audio/pcm needs whole 2-byte samples; InputDecoder keeps a split one")
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768.0)
    return _G711[fmt][0][np.frombuffer(data, dtype=np.uint8)]


def encode(samples: FloatArray, fmt: AudioFormat) -> bytes:
    """Bytes of the format for float samples already at its rate (clipped to [-1, 1])."""
    pcm = to_pcm16(samples)
    if fmt == "audio/pcm":
        return pcm.tobytes()
    return _G711[fmt][1][pcm.view(np.uint16)].tobytes()


class InputDecoder:
    """Decodes one stream's messages in order, carrying a PCM16 sample split across two messages."""

    def __init__(self, fmt: AudioFormat) -> None:
        self.format: AudioFormat = fmt
        self._carry = b""

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATES[self.format]

    def feed(self, data: bytes) -> FloatArray:
        if self.format != "audio/pcm":
            return decode_frames(data, self.format)
        data = self._carry + data
        whole = len(data) - len(data) % 2
        self._carry = data[whole:]
        return decode_frames(data[:whole], self.format)

    def reset(self) -> None:
        """Forget a half sample (the client cleared its input buffer)."""
        self._carry = b""


class StreamResampler:
    """One stream's resampler: fed chunk by chunk, it gives what `audio.resample` gives for the whole.

    FFmpeg's filter looks a few samples ahead, so each chunk's output lags its input by that much (16 samples
    at 24 -> 16 kHz, about 1 ms); `flush` returns the rest at the end of the stream. The output is aligned
    with the input: sample n of the output is at n / to_rate seconds of the input.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._resampler: av.AudioResampler | None = None

    def feed(self, samples: FloatArray) -> FloatArray:
        if self.from_rate == self.to_rate:
            return np.asarray(samples, dtype=np.float32)
        if samples.size == 0:
            return np.zeros(0, dtype=np.float32)
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=self.to_rate)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = self.from_rate
        frame.pts = None  # the resampler counts samples itself: the stream is continuous by construction
        return self._collect(self._resampler.resample(frame))

    def flush(self) -> FloatArray:
        """The samples still held in the filter; the next `feed` starts a new stream."""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return np.zeros(0, dtype=np.float32)
        return self._collect(resampler.resample(None))

    def reset(self) -> None:
        """Drop what the filter holds and start a new stream."""
        self._resampler = None

    @staticmethod
    def _collect(frames: list[av.AudioFrame]) -> FloatArray:
        chunks = [frame.to_ndarray().reshape(-1) for frame in frames]
        return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
