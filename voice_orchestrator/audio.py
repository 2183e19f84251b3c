"""Decoding uploads by their content, and encoding replies as WAV.

Every upload goes through FFmpeg (PyAV, already a faster-whisper dependency): the container is probed from
the bytes, never from the file name; the first audio stream is downmixed and resampled to 16 kHz mono float32
while it is decoded, so an over-long file is refused as soon as it passes the limit instead of after a full
decode.
"""

from __future__ import annotations

import io
import logging
import wave
from dataclasses import dataclass

import av
import numpy as np

from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import DecodedAudio, FloatArray

logger = logging.getLogger(__name__)

TARGET_SAMPLE_RATE = 16_000

# FFmpeg demuxer names we accept. Probing random bytes can land on exotic demuxers (images, subtitles, raw
# streams); only real audio containers get through. mp4/m4a is what Safari's MediaRecorder produces.
ACCEPTED_CONTAINERS: dict[str, str] = {
    "wav": "wav",
    "w64": "wav",
    "flac": "flac",
    "ogg": "ogg",
    "mp3": "mp3",
    "matroska,webm": "webm",
    "mov,mp4,m4a,3gp,3g2,mj2": "mp4",
    "aiff": "aiff",
}


@dataclass(frozen=True)
class AudioLimits:
    min_seconds: float
    max_seconds: float


def invalid_audio(message: str, **details: object) -> OrchestratorError:
    """INVALID_AUDIO_FORMAT (400), with what was found as details."""
    return OrchestratorError(OrchestratorErrorCode.INVALID_AUDIO_FORMAT, message, details=details or None)


def audio_too_long(seconds: float, limits: AudioLimits) -> OrchestratorError:
    """AUDIO_TOO_LONG, with the duration found and the limit."""
    return OrchestratorError(
        OrchestratorErrorCode.AUDIO_TOO_LONG,
        f"Audio is longer than the {limits.max_seconds:g} s limit.",
        details={"duration_s": round(seconds, 3), "max_audio_seconds": limits.max_seconds},
    )


def audio_too_short(seconds: float, limits: AudioLimits) -> OrchestratorError:
    """AUDIO_TOO_SHORT, with the duration found and the minimum."""
    return OrchestratorError(
        OrchestratorErrorCode.AUDIO_TOO_SHORT,
        f"Audio is shorter than the {limits.min_seconds:g} s minimum.",
        details={"duration_s": round(seconds, 3), "min_audio_seconds": limits.min_seconds},
    )


def _declared_duration(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def decode_audio(data: bytes, limits: AudioLimits) -> DecodedAudio:
    """Decode any supported upload to 16 kHz mono float32, enforcing the duration limits.

    Raises `OrchestratorError` with INVALID_AUDIO_FORMAT, AUDIO_TOO_SHORT or AUDIO_TOO_LONG.
    """
    if not data:
        raise invalid_audio("The audio file is empty.")
    try:
        return _decode(data, limits)
    except OrchestratorError:
        raise
    except Exception as exc:  # untrusted bytes: any decoder failure means the upload is not usable audio
        logger.debug("audio decode failed: %r", exc)
        raise invalid_audio("The upload could not be decoded as audio.", reason=type(exc).__name__) from None


def _decode(data: bytes, limits: AudioLimits) -> DecodedAudio:
    with av.open(io.BytesIO(data), mode="r", metadata_errors="ignore") as container:
        format_name = ACCEPTED_CONTAINERS.get(container.format.name)
        if format_name is None:
            raise invalid_audio(
                "Unsupported audio container.",
                detected=container.format.name,
                supported=sorted(set(ACCEPTED_CONTAINERS.values())),
            )
        stream = next(iter(container.streams.audio), None)
        if stream is None:
            raise invalid_audio("The file has no audio stream.", detected=format_name)
        rate = int(stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.channels or 0)
        if rate <= 0 or channels <= 0:
            raise invalid_audio("The audio stream declares no sample rate or no channels.", sample_rate=rate)

        declared = _declared_duration(container, stream)
        if declared is not None and declared > limits.max_seconds:
            raise audio_too_long(declared, limits)

        samples = _decode_stream(container, stream, limits)

    if samples.size and not np.isfinite(samples).all():
        raise invalid_audio("The audio contains non-finite samples (NaN or infinity).")
    decoded = DecodedAudio(
        samples=samples, source_format=format_name, source_sample_rate=rate, source_channels=channels
    )
    if decoded.duration_s < limits.min_seconds:
        raise audio_too_short(decoded.duration_s, limits)
    return decoded


def _decode_stream(
    container: av.container.InputContainer, stream: av.audio.AudioStream, limits: AudioLimits
) -> FloatArray:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=TARGET_SAMPLE_RATE)
    max_samples = int(limits.max_seconds * TARGET_SAMPLE_RATE)
    chunks: list[FloatArray] = []
    total = 0
    for frame in container.decode(stream):
        frame.pts = None  # let the resampler count samples itself; lying timestamps must not skew it
        for out in resampler.resample(frame):
            chunk = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
            chunks.append(chunk)
            total += chunk.size
        if total > max_samples:
            raise audio_too_long(total / TARGET_SAMPLE_RATE, limits)
    for out in resampler.resample(None):
        chunks.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(chunks)
    if samples.size > max_samples:
        raise audio_too_long(samples.size / TARGET_SAMPLE_RATE, limits)
    return samples


def encode_wav_pcm16(samples: FloatArray, sample_rate: int) -> bytes:
    """PCM16 mono WAV bytes from float samples in [-1, 1] (clipped)."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    return buffer.getvalue()


def resample(samples: FloatArray, from_rate: int, to_rate: int) -> FloatArray:
    """Mono float samples at another rate (FFmpeg's resampler), e.g. to join voices of different rates."""
    if from_rate == to_rate or samples.size == 0:
        return samples
    frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = from_rate
    resampler = av.AudioResampler(format="flt", layout="mono", rate=to_rate)
    chunks = [out.to_ndarray().reshape(-1) for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
