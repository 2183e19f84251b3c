"""Builds real audio files in memory (any container/codec FFmpeg can write) for the tests."""

from __future__ import annotations

import io
import struct
from typing import Any

import av
import numpy as np
import numpy.typing as npt

# (container, codec, sample format FFmpeg wants for that codec)
FORMATS: dict[str, tuple[str, str, str]] = {
    "wav-u8": ("wav", "pcm_u8", "u8"),
    "wav-s16": ("wav", "pcm_s16le", "s16"),
    "wav-s24": ("wav", "pcm_s24le", "s32"),
    "wav-s32": ("wav", "pcm_s32le", "s32"),
    "wav-f32": ("wav", "pcm_f32le", "flt"),
    "flac": ("flac", "flac", "s16"),
    "ogg-opus": ("ogg", "libopus", "flt"),
    "ogg-vorbis": ("ogg", "vorbis", "fltp"),
    "mp3": ("mp3", "libmp3lame", "fltp"),
    "webm-opus": ("webm", "libopus", "flt"),
    "m4a-aac": ("mp4", "aac", "fltp"),
}


def tone(
    seconds: float, rate: int = 16_000, frequency: float = 440.0, channels: int = 1
) -> npt.NDArray[np.float32]:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
    return np.tile(mono, (channels, 1)) if channels > 1 else mono


def encode(samples: npt.NDArray[np.float32], rate: int, kind: str) -> bytes:
    """Encode float samples ((n,) mono or (channels, n)) with one of FORMATS."""
    container, codec, sample_format = FORMATS[kind]
    planar = samples.reshape(1, -1) if samples.ndim == 1 else samples
    if codec == "libopus" and rate not in (8_000, 12_000, 16_000, 24_000, 48_000):
        planar, rate = _resample(planar, rate, 48_000), 48_000  # Opus only encodes these rates
    channels = planar.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container) as out:
        # FFmpeg's own Vorbis encoder is flagged experimental: allow it explicitly.
        options = {"strict": "experimental"} if codec == "vorbis" else {}
        stream: Any = out.add_stream(codec, rate=rate, layout=layout, options=options)
        data: Any = _as_format(planar, sample_format)
        frame = av.AudioFrame.from_ndarray(data, format=sample_format, layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def _resample(planar: npt.NDArray[np.float32], rate: int, target: int) -> npt.NDArray[np.float32]:
    source_t = np.arange(planar.shape[1]) / rate
    target_t = np.arange(int(planar.shape[1] * target / rate)) / target
    return np.stack([np.interp(target_t, source_t, row) for row in planar]).astype(np.float32)


def _as_format(planar: npt.NDArray[np.float32], sample_format: str) -> npt.NDArray[np.generic]:
    clipped = np.clip(planar, -1.0, 1.0)
    if sample_format == "u8":
        data: npt.NDArray[np.generic] = ((clipped * 127.0) + 128.0).astype(np.uint8)
    elif sample_format == "s16":
        data = (clipped * 32767.0).astype(np.int16)
    elif sample_format == "s32":
        data = (clipped * 2147483647.0).astype(np.int32)
    else:
        data = clipped.astype(np.float32)
    if sample_format.endswith("p"):
        return data  # planar: one row per channel
    return data.T.reshape(1, -1)  # packed: interleaved in one row


def float_wav(samples: npt.NDArray[np.float32], rate: int, channels: int = 1) -> bytes:
    """A 32-bit float WAV written by hand, so tests can put NaN or odd header values in it."""
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * channels * 4, channels * 4, 32)
    return (
        b"RIFF"
        + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(data))
        + data
    )
