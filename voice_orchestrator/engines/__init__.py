"""Inference engines behind small Protocols, one module per backend.

Backends are imported lazily by the factories below, so a CPU install never imports vLLM or torch, and a
missing optional dependency fails at start-up with an install hint instead of an ImportError deep in Ray.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from voice_orchestrator.protocol import (
    EngineInfo,
    FloatArray,
    ReplyRequest,
    SpeechAudio,
    SpeechTask,
    Transcription,
)
from voice_orchestrator.settings import LanguageModelSettings, SpeechToTextSettings, TextToSpeechSettings


class SpeechToTextEngine(Protocol):
    info: EngineInfo

    def transcribe(
        self, samples: FloatArray, language: str | None, task: SpeechTask = "transcribe"
    ) -> Transcription:
        """Blocking: 16 kHz mono float32 samples -> text. `language` (of the speech) None = detect;
        `translate`: the text in English, whatever the speech's language."""
        ...

    def probe(self) -> None:
        """Blocking: a real, tiny inference (warm-up and health checks); raises if the engine is broken."""
        ...


class LanguageModelEngine(Protocol):
    info: EngineInfo

    def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        """Text deltas of the reply as the model produces them (async: never blocks the event loop)."""
        ...

    async def probe(self) -> None:
        """A real, one-token generation (warm-up and health checks); raises if the engine is broken."""
        ...

    def count_tokens(self, text: str) -> int:
        """How many tokens of this model's tokenizer `text` is (usage accounting)."""
        ...

    def prompt_tokens(self, request: ReplyRequest) -> int:
        """How many tokens the prompt of `request` is, as this model reads it (usage accounting)."""
        ...


class TextToSpeechEngine(Protocol):
    info: EngineInfo

    def synthesize(self, text: str, language: str, voice: str | None = None) -> SpeechAudio:
        """Blocking: text -> mono float32 speech at the voice's own sample rate; `voice` None = configured.
        An unknown `voice` raises OrchestratorError(INVALID_REQUEST)."""
        ...

    def probe(self) -> None:
        """Blocking: synthesise a word with every voice (warm-up and health checks); raises if broken."""
        ...


class MissingDependencyError(RuntimeError):
    """An optional engine was configured but its package is not installed."""

    def __init__(self, engine: str, package: str, extra: str) -> None:
        import sys

        # The project is not on PyPI: the extra installs from a checkout or from the wheel `make wheel` makes.
        super().__init__(
            f"The {engine!r} engine needs {package!r}, which is not installed in {sys.executable}. Install "
            f"the {extra!r} extra on every Ray node: pip install '/path/to/voice-orchestrator[{extra}]' (a "
            f"checkout) or pip install 'voice_orchestrator-<version>-py3-none-any.whl[{extra}]' (make wheel)"
        )


def create_stt_engine(settings: SpeechToTextSettings, cache_dir: Path) -> SpeechToTextEngine:
    from voice_orchestrator.engines.faster_whisper import FasterWhisperEngine

    return FasterWhisperEngine(settings, cache_dir)


def create_llm_engine(settings: LanguageModelSettings, cache_dir: Path) -> LanguageModelEngine:
    if settings.per_language:  # a model per language in this one deployment
        from voice_orchestrator.engines.routing import LanguageRoutedEngine

        return LanguageRoutedEngine.create(settings, cache_dir, create_llm_engine)
    if settings.engine == "vllm":
        from voice_orchestrator.engines.vllm import VLLMEngine

        return VLLMEngine(settings, cache_dir)
    from voice_orchestrator.engines.llama_cpp import LlamaCppEngine

    return LlamaCppEngine(settings, cache_dir)


def create_tts_engine(settings: TextToSpeechSettings, cache_dir: Path) -> TextToSpeechEngine:
    if settings.engine == "coqui":
        from voice_orchestrator.engines.coqui import CoquiSpeechEngine

        return CoquiSpeechEngine(settings, cache_dir)
    from voice_orchestrator.engines.embedded_tts import EmbeddedSpeechEngine

    return EmbeddedSpeechEngine(settings, cache_dir)
