"""LanguageModel deployment: llama.cpp (CPU) behind the streaming `LanguageModelEngine`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ray import serve

from deployments._metrics import ServeMeter
from deployments._replica import served, setup_replica
from voice_orchestrator.engines import create_llm_engine
from voice_orchestrator.health import EngineHealth
from voice_orchestrator.metrics import measured_stream
from voice_orchestrator.protocol import EngineInfo, Reply, ReplyRequest
from voice_orchestrator.settings import OrchestratorSettings


@serve.deployment(ray_actor_options={"num_cpus": 0.5}, max_ongoing_requests=4, health_check_timeout_s=60)
class LanguageModel:
    # Serve awaits async constructors; type checkers insist __init__ be synchronous.
    async def __init__(self, settings: OrchestratorSettings) -> None:  # type: ignore[misc]
        setup_replica(settings)
        self._engine = create_llm_engine(settings.llm, settings.cache_dir)
        self._health = EngineHealth(self._engine.probe, settings.health_probe_interval_seconds)
        self._meter = ServeMeter()
        await self._engine.probe()  # warm-up, so the first request is not the slow one
        self._health.record_success()

    def _deltas(self, request: ReplyRequest) -> AsyncIterator[str]:
        return measured_stream(
            self._engine.stream(request), self._meter, self._engine.info.engine, request.language
        )

    async def reply(self, request: ReplyRequest) -> Reply:
        async def collect() -> Reply:
            deltas = [delta async for delta in self._deltas(request)]
            return Reply(
                text="".join(deltas).strip(), language=request.language, completion_tokens=len(deltas)
            )

        return await served(
            "llm",
            self._health,
            collect(),
            meter=self._meter,
            engine=self._engine.info.engine,
            language=lambda _: request.language,
        )

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        """Text deltas as generated; call through `handle.options(stream=True)`."""
        async for delta in self._deltas(request):
            yield delta

    async def info(self) -> EngineInfo:
        return self._engine.info

    async def check_health(self) -> None:
        await self._health.check()
