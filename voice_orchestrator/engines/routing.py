"""One LanguageModel deployment, a model per language: each request goes to its language's engine.

The packaged models are small and each is good at something else (Gemma 3 270M base answers Japanese,
SmolLM2-135M-Instruct answers English much better but speaks no Japanese), so the embedded profile can hold
both in one replica: `llm.per_language: {"en": {"packaged_model": "smollm2-135m-instruct"}}` runs SmolLM2
for English and the section's own model for every other language.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from voice_orchestrator.engines import LanguageModelEngine
from voice_orchestrator.protocol import EngineInfo, ReplyRequest
from voice_orchestrator.settings import LanguageModelSettings


class LanguageRoutedEngine:
    def __init__(self, default: LanguageModelEngine, by_language: dict[str, LanguageModelEngine]) -> None:
        self._default = default
        self._by_language = by_language
        routes = {
            language: {"engine": engine.info.engine, "model": engine.info.model, **engine.info.extra}
            for language, engine in sorted(by_language.items())
        }
        self.info = EngineInfo(
            engine=default.info.engine,
            model=default.info.model,
            extra={**default.info.extra, "per_language": routes},
        )

    @classmethod
    def create(
        cls,
        settings: LanguageModelSettings,
        cache_dir: Path,
        create: Callable[[LanguageModelSettings, Path], LanguageModelEngine],
    ) -> LanguageRoutedEngine:
        """The section's own engine for every other language, and one per `per_language` entry."""
        default = create(settings.for_language(None), cache_dir)
        by_language = {
            language: create(settings.for_language(language), cache_dir) for language in settings.per_language
        }
        return cls(default, by_language)

    def engine_for(self, language: str | None) -> LanguageModelEngine:
        if language is None:
            return self._default
        return self._by_language.get(language, self._default)

    def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        return self.engine_for(request.language).stream(request)

    def prompt_tokens(self, request: ReplyRequest) -> int:
        return self.engine_for(request.language).prompt_tokens(request)

    def count_tokens(self, text: str, language: str | None = None) -> int:
        """In the tokens of the model that answers `language` (the default model's when None)."""
        return self.engine_for(language).count_tokens(text)

    async def probe(self) -> None:
        # Every model: a broken one must fail the health check even if its language is rarely asked.
        await asyncio.gather(
            self._default.probe(), *(engine.probe() for engine in self._by_language.values())
        )

    def shutdown(self) -> None:
        for engine in (self._default, *self._by_language.values()):
            shutdown = getattr(engine, "shutdown", None)
            if shutdown is not None:
                shutdown()
