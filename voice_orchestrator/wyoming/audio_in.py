"""A Wyoming audio stream (audio-start, audio-chunk*, audio-stop) gathered as speech for recognition.

Chunks carry their own format (rate, sample width, channels; Home Assistant sends 16 kHz 16-bit mono); each is
checked, mixed to mono and resampled to 16 kHz as it comes, and the whole stream is bounded by
`max_audio_seconds` as it grows, so an endless stream costs at most that much memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from voice_orchestrator.audio import (
    TARGET_SAMPLE_RATE,
    AudioLimits,
    audio_too_long,
    audio_too_short,
    invalid_audio,
)
from voice_orchestrator.protocol import DecodedAudio, FloatArray
from voice_orchestrator.realtime.codecs import StreamResampler

SAMPLE_WIDTHS: dict[int, np.dtype[Any]] = {1: np.dtype("u1"), 2: np.dtype("<i2"), 4: np.dtype("<i4")}
MAX_CHANNELS = 8
RATES = range(8_000, 192_001)


@dataclass(frozen=True)
class PcmFormat:
    rate: int
    width: int
    channels: int

    @classmethod
    def of(cls, data: dict[str, object], fallback: PcmFormat | None = None) -> PcmFormat:
        """The format an audio event declares (a chunk may leave it to its audio-start); a bad one is a
        400-class refusal naming the field."""
        values: dict[str, int] = {}
        for name in ("rate", "width", "channels"):
            value = data.get(name, getattr(fallback, name, None))
            if not isinstance(value, int) or isinstance(value, bool):
                raise invalid_audio(f"audio {name} must be an integer", field=name)
            values[name] = value
        if values["rate"] not in RATES:
            raise invalid_audio(f"audio rate {values['rate']} is outside 8000-192000 Hz", field="rate")
        if values["width"] not in SAMPLE_WIDTHS:
            raise invalid_audio(f"audio width {values['width']} is not 1, 2 or 4 bytes", field="width")
        if not 1 <= values["channels"] <= MAX_CHANNELS:
            raise invalid_audio(
                f"audio channels {values['channels']} is outside 1-{MAX_CHANNELS}", field="channels"
            )
        return cls(values["rate"], values["width"], values["channels"])

    def samples(self, payload: bytes) -> FloatArray:
        """PCM as mono floats in [-1, 1] (a trailing partial frame is dropped)."""
        frame = self.width * self.channels
        usable = len(payload) - len(payload) % frame
        pcm = np.frombuffer(payload[:usable], dtype=SAMPLE_WIDTHS[self.width]).astype(np.float32)
        if self.width == 1:  # unsigned 8-bit, centred on 128
            pcm = (pcm - 128.0) / 128.0
        else:
            pcm /= float(2 ** (8 * self.width - 1))
        mono: FloatArray = pcm.reshape(-1, self.channels).mean(axis=1, dtype=np.float32)
        return mono


class SpeechInput:
    """One utterance's audio, converted chunk by chunk and bounded."""

    def __init__(self, fmt: PcmFormat, limits: AudioLimits) -> None:
        self.format = fmt
        self._limits = limits
        self._max_samples = int(limits.max_seconds * TARGET_SAMPLE_RATE)
        self._resampler = StreamResampler(fmt.rate, TARGET_SAMPLE_RATE)
        self._chunks: list[FloatArray] = []
        self._count = 0

    @property
    def seconds(self) -> float:
        return self._count / TARGET_SAMPLE_RATE

    def add(self, data: dict[str, object], payload: bytes) -> None:
        """One audio-chunk; AUDIO_TOO_LONG once the stream passes `max_audio_seconds`."""
        fmt = PcmFormat.of(data, self.format)
        if fmt.rate != self.format.rate:  # a client may change rate mid-stream: follow it
            self._keep(self._resampler.flush())
            self._resampler = StreamResampler(fmt.rate, TARGET_SAMPLE_RATE)
        self.format = fmt
        self._keep(self._resampler.feed(fmt.samples(payload)))

    def finish(self) -> DecodedAudio:
        """The utterance (AUDIO_TOO_SHORT under `min_audio_seconds`)."""
        self._keep(self._resampler.flush())
        if self.seconds < self._limits.min_seconds:
            raise audio_too_short(self.seconds, self._limits)
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
        return DecodedAudio(
            samples=samples,
            source_format="pcm",
            source_sample_rate=self.format.rate,
            source_channels=self.format.channels,
        )

    def _keep(self, samples: FloatArray) -> None:
        self._count += len(samples)
        if self._count > self._max_samples:
            raise audio_too_long(self.seconds, self._limits)
        if len(samples):
            self._chunks.append(samples)
