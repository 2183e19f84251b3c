"""Speech-to-text with faster-whisper (CTranslate2): the packaged Whisper base on CPU, any model on GPU."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from voice_orchestrator.engines.assets import packaged_whisper_base
from voice_orchestrator.protocol import EngineInfo, FloatArray, Transcription
from voice_orchestrator.settings import SpeechToTextSettings

logger = logging.getLogger(__name__)


class FasterWhisperEngine:
    def __init__(self, settings: SpeechToTextSettings, cache_dir: Path) -> None:
        try:
            from faster_whisper import BatchedInferencePipeline, WhisperModel
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
        self._model = WhisperModel(
            model,
            device=settings.device,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.num_workers,
            local_files_only=not download,
        )
        logger.info("faster-whisper loaded in %.1f s", time.perf_counter() - started)
        # Batched: the speech regions VAD finds in one upload are decoded together (pays on a GPU with long
        # uploads); concurrent uploads already run side by side on num_workers CTranslate2 workers.
        self._batched = BatchedInferencePipeline(model=self._model) if settings.batch_size > 1 else None
        self._settings = settings
        self.info = EngineInfo(
            engine="faster-whisper",
            model=label,
            extra={
                "device": settings.device,
                "compute_type": settings.compute_type,
                "num_workers": settings.num_workers,
                "batch_size": settings.batch_size,
            },
        )

    def transcribe(self, samples: FloatArray, language: str | None) -> Transcription:
        options = {
            "language": language,
            "beam_size": self._settings.beam_size,
            "temperature": 0.0,
            "condition_on_previous_text": False,
            "vad_filter": self._settings.vad_filter,
        }
        if self._batched is not None:
            batch = self._settings.batch_size
            segments, info = self._batched.transcribe(samples, batch_size=batch, **options)
        else:
            segments, info = self._model.transcribe(samples, **options)
        # Segments are a lazy generator: decoding happens while we join them. Japanese segments carry no
        # leading spaces and English ones do, so plain concatenation is right for both.
        text = "".join(segment.text for segment in segments).strip()
        return Transcription(
            text=text, language=info.language, language_probability=round(info.language_probability, 3)
        )

    def probe(self) -> None:
        # One encoder pass and one decoder step on a short tone: VAD off, or it would skip the model.
        tone = (0.1 * np.sin(2 * np.pi * 440.0 * np.arange(16_000) / 16_000)).astype(np.float32)
        segments, _ = self._model.transcribe(
            tone, language="en", vad_filter=False, beam_size=1, without_timestamps=True, max_new_tokens=1
        )
        for _ in segments:
            pass
