"""LanguageModel deployment: llama.cpp (CPU) or vLLM behind the streaming `LanguageModelEngine`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from deployments._metrics import ServeMeter
from deployments._replica import MODEL_STAGE_OPTIONS, ModelStage, served_stream
from voice_orchestrator.engines import LanguageModelEngine, create_llm_engine
from voice_orchestrator.metrics import measured_stream
from voice_orchestrator.protocol import EngineInfo, Reply, ReplyRequest, TokenUsage
from voice_orchestrator.settings import EngineSettings, StageSettings


@serve.deployment(**MODEL_STAGE_OPTIONS)
class LanguageModel(ModelStage[StageSettings]):
    live_settings = StageSettings

    # Serve awaits async constructors; type checkers insist __init__ be synchronous.
    async def __init__(self, settings: EngineSettings) -> None:  # type: ignore[misc]
        self._engine = create_llm_engine(settings.llm, settings.cache_dir)
        self._start(self._engine.probe)
        self._meter = ServeMeter()
        await self._engine.probe()  # warm-up, so the first request is not the slow one
        self._health.record_success()

    def _deltas(self, request: ReplyRequest) -> AsyncIterator[str]:
        engine, language = self._engine.info.engine, request.language
        deltas = measured_stream(self._engine.stream(request), self._meter, engine, language)
        return served_stream("llm", self._health, deltas, meter=self._meter, engine=engine, language=language)

    async def reply(self, request: ReplyRequest) -> Reply:
        """The whole reply at once, with its real token count."""
        text = "".join([delta async for delta in self._deltas(request)]).strip()
        return Reply(text=text, language=request.language, completion_tokens=self._engine.count_tokens(text))

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        """Text deltas as generated; call through `handle.options(stream=True)`."""
        async for delta in self._deltas(request):
            yield delta

    async def usage(self, request: ReplyRequest, completion: str) -> TokenUsage:
        """The tokens of a request's prompt and of its reply, counted by the model answering its language."""
        route: Any = getattr(self._engine, "engine_for", None)
        engine: LanguageModelEngine = route(request.language) if route is not None else self._engine
        prompt, written = engine.prompt_tokens(request), engine.count_tokens(completion)
        return TokenUsage(prompt_tokens=prompt, completion_tokens=written, total_tokens=prompt + written)

    async def info(self) -> EngineInfo:
        return self._engine.info
