"""TextToSpeech deployment: the embedded Kokoro (Japanese) + Piper voices, or Coqui TTS, behind
`TextToSpeechEngine`."""

from __future__ import annotations

import asyncio

from ray import serve

from deployments._metrics import ServeMeter
from deployments._replica import MODEL_STAGE_OPTIONS, ModelStage, served
from voice_orchestrator.engines import create_tts_engine
from voice_orchestrator.errors import OrchestratorError
from voice_orchestrator.metrics import OUTPUT_AUDIO, language_tag
from voice_orchestrator.protocol import EngineInfo, SpeechAudio, SynthesisRequest
from voice_orchestrator.settings import EngineSettings, SpeechSettings


@serve.deployment(**MODEL_STAGE_OPTIONS)
class TextToSpeech(ModelStage[SpeechSettings]):
    live_settings = SpeechSettings

    def __init__(self, settings: EngineSettings) -> None:
        self._engine = create_tts_engine(settings.tts, settings.cache_dir)
        self._start(lambda: asyncio.to_thread(self._engine.probe))
        self._meter = ServeMeter()
        # One synthesis at a time, in arrival order: a reply's next sentence is sent while this one is made
        # (`Prefetched`) and must not overtake it, which the engine's own thread lock does not promise.
        self._in_order = asyncio.Lock()
        self._engine.probe()  # warm-up, so the first request is not the slow one
        self._health.record_success()

    def _check(self, live: SpeechSettings) -> None:
        voice = live.default_voice
        if voice is None:
            return
        try:  # one short synthesis with it: an unknown voice is refused here, not on the next request
            self._engine.synthesize("はい。", "ja", voice)
        except OrchestratorError as error:
            raise ValueError(f"default_voice: {error.message}") from None

    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        engine = self._engine.info.engine
        voice = request.voice or self.live.default_voice
        speech = await served(
            "tts",
            self._health,
            self._in_turn(request, voice),
            meter=self._meter,
            engine=engine,
            language=lambda _: request.language,
        )
        self._meter.record(
            OUTPUT_AUDIO, speech.duration_s, {"engine": engine, "language": language_tag(request.language)}
        )
        return speech

    async def _in_turn(self, request: SynthesisRequest, voice: str | None) -> SpeechAudio:
        async with self._in_order:
            return await asyncio.to_thread(self._engine.synthesize, request.text, request.language, voice)

    async def info(self) -> EngineInfo:
        return self._engine.info
