"""SpeechToText deployment: faster-whisper behind `SpeechToTextEngine`."""

from __future__ import annotations

import asyncio

from ray import serve

from deployments._metrics import ServeMeter
from deployments._replica import MODEL_STAGE_OPTIONS, ModelStage, served
from voice_orchestrator.engines import create_stt_engine
from voice_orchestrator.metrics import INPUT_AUDIO, language_tag
from voice_orchestrator.protocol import DecodedAudio, EngineInfo, SpeechTask, Transcription
from voice_orchestrator.settings import EngineSettings, StageSettings


@serve.deployment(**MODEL_STAGE_OPTIONS)
class SpeechToText(ModelStage[StageSettings]):
    live_settings = StageSettings

    def __init__(self, settings: EngineSettings) -> None:
        self._engine = create_stt_engine(settings.stt, settings.cache_dir)
        self._start(lambda: asyncio.to_thread(self._engine.probe))
        self._meter = ServeMeter()
        self._engine.probe()  # warm-up, so the first request is not the slow one
        self._health.record_success()

    async def transcribe(
        self, audio: DecodedAudio, language: str | None, task: SpeechTask = "transcribe"
    ) -> Transcription:
        engine = self._engine.info.engine
        transcription = await served(
            "stt",
            self._health,
            asyncio.to_thread(self._engine.transcribe, audio.samples, language, task),
            meter=self._meter,
            engine=engine,
            language=lambda result: result.language,
        )
        self._meter.record(
            INPUT_AUDIO,
            audio.duration_s,
            {"engine": engine, "language": language_tag(transcription.language)},
        )
        return transcription

    async def info(self) -> EngineInfo:
        return self._engine.info
