"""Speech-to-text with faster-whisper (CTranslate2): the packaged Whisper base on CPU, any model on GPU.

Questions (up to `max_fitted_seconds` of speech) take the fitted-window path (whisper_window.py): one encoder
pass on a window sized to the clip, for both language detection and decoding. Longer uploads, the batched
pipeline and `fitted_window: false` take faster-whisper's own `transcribe`.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from voice_orchestrator.engines.assets import packaged_whisper_base
from voice_orchestrator.engines.whisper_window import (
    SAMPLE_RATE,
    FittedWindowWhisper,
    Timeline,
    WindowOptions,
    pick_language,
    silence_language,
    speech_regions,
)
from voice_orchestrator.protocol import EngineInfo, FloatArray, SpeechSegment, SpeechTask, Transcription
from voice_orchestrator.settings import SpeechToTextSettings

logger = logging.getLogger(__name__)


def load_whisper_model(settings: SpeechToTextSettings, cache_dir: Path) -> tuple[Any, str]:
    """The faster_whisper.WhisperModel the settings name, and a label for it."""
    try:
        from faster_whisper import WhisperModel
    except ModuleNotFoundError:
        from voice_orchestrator.engines import MissingDependencyError

        raise MissingDependencyError("faster-whisper", "faster-whisper", "embedded") from None

    download = settings.model_path is None and settings.model_name is not None
    if settings.model_path is not None:
        model, label = str(settings.model_path), settings.model_path.name
    elif settings.model_name is not None:
        model, label = settings.model_name, settings.model_name
    else:
        # The packaged model: nothing may reach for the hub (a size name like "base" would).
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        model, label = str(packaged_whisper_base(cache_dir)), "whisper-base (packaged)"
    logger.info(
        "loading faster-whisper model %s (%s, %s)%s",
        model,
        settings.device,
        settings.compute_type,
        "; downloading it if not cached" if download else "",
    )
    started = time.perf_counter()
    model_object = WhisperModel(
        model,
        device=settings.device,
        compute_type=settings.compute_type,
        cpu_threads=settings.cpu_threads,
        num_workers=settings.num_workers,
        local_files_only=not download,
    )
    logger.info("faster-whisper loaded in %.1f s", time.perf_counter() - started)
    return model_object, label


def window_options(settings: SpeechToTextSettings) -> WindowOptions:
    return WindowOptions(
        margin_frames=settings.window_margin_frames,
        bucket_frames=settings.window_bucket_frames,
        max_seconds=settings.max_fitted_seconds,
        language_threshold=settings.window_language_threshold,
        beam_size=settings.beam_size,
        vad_filter=settings.vad_filter,
        expected_languages=tuple(settings.expected_languages) if settings.expected_languages else None,
    )


class FasterWhisperEngine:
    def __init__(self, settings: SpeechToTextSettings, cache_dir: Path, model: Any = None) -> None:
        """`model`: an already loaded WhisperModel to share (the STT benchmark compares settings on one)."""
        if model is None:
            model, label = load_whisper_model(settings, cache_dir)
        else:
            label = str(settings.model_path or settings.model_name or "whisper-base (packaged)")
        from faster_whisper import BatchedInferencePipeline

        self._model = model
        # Batched: the speech regions VAD finds in one upload are decoded together (pays on a GPU with long
        # uploads); concurrent uploads already run side by side on num_workers CTranslate2 workers.
        self._batched = BatchedInferencePipeline(model=model) if settings.batch_size > 1 else None
        self._window = (
            FittedWindowWhisper(model, window_options(settings))
            if settings.fitted_window and self._batched is None
            else None
        )
        expected = tuple(settings.expected_languages) if settings.expected_languages else None
        self._expected = expected
        self._settings = settings
        self.info = EngineInfo(
            engine="faster-whisper",
            model=label,
            extra={
                "device": settings.device,
                "compute_type": settings.compute_type,
                "num_workers": settings.num_workers,
                "batch_size": settings.batch_size,
                "fitted_window": self._window is not None,
            },
        )

    def transcribe(
        self, samples: FloatArray, language: str | None, task: SpeechTask = "transcribe"
    ) -> Transcription:
        heard = self._recognise(samples, language, task)
        # Whisper's last timestamp may fall past the end of the audio: no segment ends after the upload.
        duration = round(samples.size / SAMPLE_RATE, 2)
        segments = [
            segment.model_copy(
                update={"start": min(segment.start, duration), "end": min(segment.end, duration)}
            )
            for segment in heard.segments
        ]
        return heard.model_copy(update={"segments": segments})

    def _recognise(self, samples: FloatArray, language: str | None, task: SpeechTask) -> Transcription:
        if self._window is None:
            return self._transcribe_full(samples, language, self._settings.vad_filter, task)
        result = self._window.transcribe(samples, language, task)
        if result.transcription is not None:
            times = result.times
            logger.debug(
                "fitted window %d frames: vad %.0f ms, features %.0f ms, encode %.0f ms, language %.0f ms, "
                "decode %.0f ms",
                times.window_frames,
                times.vad_ms,
                times.features_ms,
                times.encode_ms,
                times.detect_ms,
                times.decode_ms,
            )
            return result.transcription
        # Too long for one fitted window: transcribe's 30 s windows, on the speech VAD has already kept.
        return self._transcribe_full(result.audio, language, False, task, result.timeline)

    def _transcribe_full(
        self,
        samples: FloatArray,
        language: str | None,
        vad_filter: bool,
        task: SpeechTask,
        timeline: Timeline | None = None,
    ) -> Transcription:
        """faster-whisper's transcribe; `timeline` maps times in `samples` (the speech VAD kept) back to the
        upload's."""
        if vad_filter and self._batched is None:
            # The same VAD transcribe would run, here, so that segment times map back as the window's do.
            samples, timeline = speech_regions(samples)
            vad_filter = False
            if samples.size == 0:
                return Transcription(text="", language=silence_language(language, self._expected))
        if language is None and self._expected and self._model.model.is_multilingual:
            # transcribe cannot restrict its detection: detect here (the pass it would spend) and pass it on.
            _, _, probabilities = self._model.detect_language(audio=samples, vad_filter=vad_filter)
            language, _ = pick_language(probabilities, self._expected)
        options = {
            "task": task,
            "language": language,
            "beam_size": self._settings.beam_size,
            "temperature": 0.0,
            "condition_on_previous_text": False,
            "vad_filter": vad_filter,
        }
        if self._batched is not None:
            batch = self._settings.batch_size
            segments, info = self._batched.transcribe(samples, batch_size=batch, **options)
        else:
            segments, info = self._model.transcribe(samples, **options)
        # Segments are a lazy generator: decoding happens while we read them. Japanese segments carry no
        # leading spaces and English ones do, so plain concatenation is right for both.
        timeline = timeline or Timeline()
        pieces = list(segments)
        text = "".join(segment.text for segment in pieces).strip()
        timed = [
            SpeechSegment(start=start, end=end, text=segment.text.strip())
            for segment in pieces
            if segment.text.strip()
            for start, end in [timeline.span(segment.start, segment.end)]
        ]
        return Transcription(text=text, language=info.language, segments=timed)

    def probe(self) -> None:
        if self._window is not None:
            self._window.probe()
            return
        # One encoder pass and one decoder step on a short tone: VAD off, or it would skip the model.
        tone = (0.1 * np.sin(2 * np.pi * 440.0 * np.arange(16_000) / 16_000)).astype(np.float32)
        segments, _ = self._model.transcribe(
            tone, language="en", vad_filter=False, beam_size=1, without_timestamps=True, max_new_tokens=1
        )
        for _ in segments:
            pass
