"""Server VAD for the realtime socket: Silero VAD v6 frame by frame, and the turn-taking state machine on it.

The model is the ONNX file faster-whisper ships (its own VAD filter uses it), run by onnxruntime, which
faster-whisper already depends on: no torch. One onnxruntime session serves every stream of the process
(`run` is thread-safe); what a stream has heard so far (the LSTM state, the 64 samples of context before each
frame, a part-frame not yet run) lives in its own `SpeechDetector`.

Cost: about 3.3 ms of one core per second of audio per stream, i.e. ~0.33 % of a core (`probabilities` over
60 s of speech and pauses fed in 20 ms chunks, single thread, measured on AMD EPYC at 2.6 GHz); the state
machine adds nothing measurable. A 20 ms chunk completes at most one 32 ms frame, so each run is one frame.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from voice_orchestrator.protocol import FloatArray

SAMPLE_RATE = 16_000
FRAME_SAMPLES = 512  # what Silero v6 is trained on at 16 kHz
FRAME_MS = FRAME_SAMPLES * 1000 // SAMPLE_RATE  # 32, exactly
CONTEXT_SAMPLES = 64  # the end of the previous frame, which the model sees before each frame
_STATE_SHAPE = (1, 1, 128)

_session: Any = None
_session_lock = threading.Lock()


def silero_model_path() -> Path:
    """faster-whisper's copy of Silero VAD v6, located without importing faster-whisper (and CTranslate2)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        from voice_orchestrator.engines import MissingDependencyError

        raise MissingDependencyError("Silero VAD", "faster-whisper", "embedded")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"
    if not path.is_file():
        raise RuntimeError(
            f"faster-whisper is installed but {path} is missing (faster-whisper>=1.2 ships it)"
        )
    return path


def silero_session() -> Any:
    """The process's one onnxruntime session of Silero VAD, created on first use."""
    global _session
    with _session_lock:
        if _session is None:
            try:
                import onnxruntime  # type: ignore[import-untyped]
            except ModuleNotFoundError:
                from voice_orchestrator.engines import MissingDependencyError

                raise MissingDependencyError("Silero VAD", "onnxruntime", "embedded") from None
            options = onnxruntime.SessionOptions()
            # One frame per run: threads only add handoffs, and every stream of the process shares the cores.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.log_severity_level = 4
            _session = onnxruntime.InferenceSession(
                str(silero_model_path()), sess_options=options, providers=["CPUExecutionProvider"]
            )
        return _session


class FrameDetector(Protocol):
    """Speech probabilities of a 16 kHz stream, one per complete 512-sample frame since the stream began."""

    def probabilities(self, samples_16k: FloatArray) -> list[float]: ...


class SpeechDetector:
    """Silero VAD over one stream: each call continues where the last one stopped."""

    def __init__(self) -> None:
        self._session = silero_session()
        self.reset()

    def reset(self) -> None:
        """Start a new stream: forget the model's state and any part-frame."""
        self._h = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def probabilities(self, samples_16k: FloatArray) -> list[float]:
        """One probability per frame completed by these samples; the rest waits for the next call."""
        buffered = np.concatenate([self._pending, np.asarray(samples_16k, dtype=np.float32)])
        count = buffered.size // FRAME_SAMPLES
        self._pending = buffered[count * FRAME_SAMPLES :]
        if count == 0:
            return []
        frames = buffered[: count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES)
        contexts = np.concatenate([self._context[None, :], frames[:-1, -CONTEXT_SAMPLES:]])
        # The rows are a sequence: the model carries h and c from each frame to the next within one run.
        speech, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([contexts, frames], axis=1), "h": self._h, "c": self._c}
        )
        self._context = frames[-1, -CONTEXT_SAMPLES:].copy()
        return [float(p) for p in np.asarray(speech).reshape(-1)]


@dataclass(frozen=True)
class VadConfig:
    """OpenAI's `server_vad` settings, plus the shortest speech that is not a click.

    `prefix_padding_ms` is the caller's to apply (how much audio before `speech_started` to keep).
    """

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    min_speech_ms: int = 96

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], not {self.threshold}")
        for name in ("prefix_padding_ms", "silence_duration_ms", "min_speech_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    @property
    def release_threshold(self) -> float:
        """Speech ends below this (Silero's hysteresis): a wavering probability must not split a word."""
        return max(self.threshold - 0.15, 0.01)


VadEventKind = Literal["speech_started", "pause", "resumed", "speech_stopped"]


@dataclass(frozen=True)
class VadEvent:
    """A turn-taking event; `at_ms` is its place in the stream, in ms from the first sample ever fed."""

    kind: VadEventKind
    at_ms: int


_State = Literal["idle", "speaking", "paused"]


class TurnDetector:
    """One stream's turns: idle -> speaking <-> paused -> idle, from per-frame speech probabilities.

    `speech_started` comes once `min_speech_ms` of consecutive frames reach `threshold`, dated to the first of
    them. `pause` comes at the first frame below the release threshold, dated to it; `resumed` when a frame
    reaches `threshold` again before `silence_duration_ms` has passed since; otherwise `speech_stopped`,
    dated to where the silence began (OpenAI's `audio_end_ms`), and the detector is idle again. Frames
    between the two thresholds keep what is going on: speech stays speech, and silence keeps counting.
    """

    def __init__(self, config: VadConfig | None = None, detector: FrameDetector | None = None) -> None:
        self.config = config or VadConfig()
        # Injected detectors must be fresh (their first probability is this stream's first frame).
        self._detector = detector if detector is not None else SpeechDetector()
        self._samples = 0
        self._frames = 0
        self._state: _State = "idle"
        self._run_start: int | None = None  # first frame of a speech run not yet long enough (idle)
        self._silence_start = 0  # first frame of the current pause (paused)

    @property
    def position_ms(self) -> int:
        """How much audio this stream has been fed, in ms."""
        return self._samples * 1000 // SAMPLE_RATE

    @property
    def in_speech(self) -> bool:
        """From `speech_started` until `speech_stopped`, pauses included."""
        return self._state != "idle"

    def reconfigure(self, config: VadConfig) -> None:
        """New settings from the next frame on (a `session.update`); the current turn carries on."""
        self.config = config

    def reset(self) -> None:
        """Back to idle (the turn was cut or committed by hand); the stream's position is kept."""
        self._state = "idle"
        self._run_start = None

    def feed(self, samples_16k: FloatArray) -> list[VadEvent]:
        self._samples += int(samples_16k.size)
        events: list[VadEvent] = []
        for probability in self._detector.probabilities(samples_16k):
            events.extend(self._step(self._frames, probability))
            self._frames += 1
        return events

    def _step(self, frame: int, probability: float) -> list[VadEvent]:
        config = self.config
        if self._state == "idle":
            if probability < config.threshold:
                self._run_start = None
                return []
            if self._run_start is None:
                self._run_start = frame
            if (frame - self._run_start + 1) * FRAME_MS < config.min_speech_ms:
                return []
            self._state = "speaking"
            return [VadEvent("speech_started", self._run_start * FRAME_MS)]
        if self._state == "speaking":
            if probability >= config.release_threshold:
                return []
            self._state, self._silence_start = "paused", frame
            return [VadEvent("pause", frame * FRAME_MS), *self._silence_so_far(frame)]
        if probability >= config.threshold:
            self._state = "speaking"
            return [VadEvent("resumed", frame * FRAME_MS)]
        return self._silence_so_far(frame)

    def _silence_so_far(self, frame: int) -> list[VadEvent]:
        """`speech_stopped` once the pause that began at `_silence_start` has lasted through `frame`."""
        if (frame - self._silence_start + 1) * FRAME_MS < self.config.silence_duration_ms:
            return []
        self.reset()
        return [VadEvent("speech_stopped", self._silence_start * FRAME_MS)]
