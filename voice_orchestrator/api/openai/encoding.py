"""Speech as OpenAI's `response_format`s, encoded piece by piece (one sentence at a time) with the FFmpeg that
PyAV bundles: `pcm` (raw 16-bit little-endian mono at 24 kHz, as OpenAI sends it), `wav`, `mp3` (LAME), `opus`
(in Ogg), `aac` (ADTS) and `flac`. Every format is 24 kHz mono, OpenAI's rate; voices at other rates are
resampled. `speed` is applied with FFmpeg's `atempo` (pitch kept).

Every format streams, WAV included: its header goes out with the first sentence, its RIFF and data sizes set
to 0xFFFFFFFF ("unknown": the length is not known until the last sentence is made), which FFmpeg, libsndfile
and Python's `wave` read to the end of the stream."""

from __future__ import annotations

import io
import itertools
import struct
from typing import Any

import av
import numpy as np

from voice_orchestrator.api.openai.protocol import AudioFormat
from voice_orchestrator.audio import resample
from voice_orchestrator.protocol import FloatArray

OUTPUT_RATE = 24_000
MEDIA_TYPES: dict[str, str] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
# response_format -> (FFmpeg muxer, encoder, its sample format)
_CODECS: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3", "libmp3lame", "s16p"),
    "opus": ("ogg", "libopus", "s16"),
    "aac": ("adts", "aac", "fltp"),
    "flac": ("flac", "flac", "s16"),
}


def pcm16(samples: FloatArray) -> bytes:
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


UNKNOWN_SIZE = 0xFFFFFFFF


def wav_header(data_bytes: int | None, rate: int = OUTPUT_RATE) -> bytes:
    """A PCM16 mono WAV header for `data_bytes` of samples; None: a stream whose length is not known yet."""
    riff, data = (UNKNOWN_SIZE, UNKNOWN_SIZE) if data_bytes is None else (36 + data_bytes, data_bytes)
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


def closed_wav(streamed: bytes) -> bytes:
    """A streamed WAV (sizes unknown) as a whole file, its sizes filled in: for a reply sent in one piece."""
    return wav_header(len(streamed) - 44) + streamed[44:]


def change_tempo(samples: FloatArray, rate: int, speed: float) -> FloatArray:
    """The speech `speed` times faster (0.25-4.0), pitch unchanged (FFmpeg's atempo, chained below 0.5)."""
    if speed == 1.0 or samples.size == 0:
        return samples
    factors: list[float] = []
    left = speed
    while left < 0.5:
        factors.append(0.5)
        left /= 0.5
    factors.append(left)
    graph = av.filter.Graph()
    source = graph.add_abuffer(format="flt", sample_rate=rate, layout="mono")
    nodes: list[Any] = [source]
    for factor in factors:
        nodes.append(graph.add("atempo", f"{factor:.6f}"))
    sink = graph.add("abuffersink")
    nodes.append(sink)
    for first, second in itertools.pairwise(nodes):
        first.link_to(second)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = rate
    frame.pts = 0
    graph.push(frame)
    graph.push(None)
    chunks: list[FloatArray] = []
    while True:
        try:
            out = graph.pull()
        except (av.error.EOFError, av.error.BlockingIOError):
            break
        chunks.append(out.to_ndarray().reshape(-1).astype(np.float32))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


class _Sink(io.RawIOBase):
    """Where the muxer writes; what it wrote is taken after each piece. Not seekable: a streamed file is never
    rewritten (FLAC's header then keeps no total length, which decoders accept)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._buffer += bytes(data)
        return len(data)

    def take(self) -> bytes:
        data, self._buffer = bytes(self._buffer), bytearray()
        return data


class SpeechEncoder:
    """Encodes one response: feed each sentence's samples (at their own rate), send what comes back, then
    `finish()`. Every format streams (`wav` with a header of unknown length first)."""

    def __init__(self, response_format: AudioFormat) -> None:
        self.format = response_format
        self.media_type = MEDIA_TYPES[response_format]
        self._started = False
        self._container: Any = None
        if response_format in _CODECS:
            muxer, codec, sample_format = _CODECS[response_format]
            self._sink = _Sink()
            self._container = av.open(self._sink, mode="w", format=muxer)
            self._stream: Any = self._container.add_stream(codec, rate=OUTPUT_RATE)
            self._stream.layout = "mono"
            self._stream.format = sample_format
            self._resampler = av.AudioResampler(format=sample_format, layout="mono", rate=OUTPUT_RATE)
            self._pts = 0

    def encode(self, samples: FloatArray, rate: int) -> bytes:
        samples = resample(samples, rate, OUTPUT_RATE)
        if self.format == "pcm":
            return pcm16(samples)
        if self.format == "wav":
            header = b"" if self._started else wav_header(None)
            self._started = True
            return header + pcm16(samples)
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono"
        )
        frame.sample_rate = OUTPUT_RATE
        return self._mux(frame)

    def _mux(self, frame: Any) -> bytes:
        for converted in self._resampler.resample(frame):
            converted.pts = self._pts
            self._pts += converted.samples
            for packet in self._stream.encode(converted):
                self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        if self.format in ("pcm", "wav"):
            return b""
        self._mux(None)
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
