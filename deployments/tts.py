"""TextToSpeech deployment: the embedded Kokoro (Japanese) + Piper voices, or Coqui TTS, behind
`TextToSpeechEngine`."""

from __future__ import annotations

import asyncio

from ray import serve

from deployments._metrics import ServeMeter
from deployments._replica import served, setup_replica
from voice_orchestrator.engines import create_tts_engine
from voice_orchestrator.health import EngineHealth
from voice_orchestrator.metrics import OUTPUT_AUDIO, language_tag
from voice_orchestrator.protocol import EngineInfo, SpeechAudio, SynthesisRequest
from voice_orchestrator.settings import OrchestratorSettings


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=4, health_check_timeout_s=60)
class TextToSpeech:
    def __init__(self, settings: OrchestratorSettings) -> None:
        setup_replica(settings)
        self._engine = create_tts_engine(settings.tts, settings.cache_dir)
        self._health = EngineHealth(
            lambda: asyncio.to_thread(self._engine.probe), settings.health_probe_interval_seconds
        )
        self._meter = ServeMeter()
        self._engine.probe()  # warm-up, so the first request is not the slow one
        self._health.record_success()

    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        engine = self._engine.info.engine
        speech = await served(
            "tts",
            self._health,
            asyncio.to_thread(self._engine.synthesize, request.text, request.language, request.voice),
            meter=self._meter,
            engine=engine,
            language=lambda _: request.language,
        )
        self._meter.record(
            OUTPUT_AUDIO, speech.duration_s, {"engine": engine, "language": language_tag(request.language)}
        )
        return speech

    async def info(self) -> EngineInfo:
        return self._engine.info

    async def check_health(self) -> None:
        await self._health.check()
