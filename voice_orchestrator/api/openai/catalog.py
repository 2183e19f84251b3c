"""The loaded models as OpenAI model ids, the well-known OpenAI names accepted as aliases, and the voices.

Each stage reports its engine (`EngineInfo`); a model's id is the engine's model name without quantisation or
notes ("gemma-3-270m Q4_K_M (packaged)" -> "gemma-3-270m"; a local path -> its file or folder name). The ids
never change while the app runs (changing a model restarts every replica), so the catalog is built once, the
first time every stage answers.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from voice_orchestrator.api.openai.protocol import ModelCard, Stage, VoiceCard
from voice_orchestrator.errors import STAGE_UNAVAILABLE, OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import EngineInfo
from voice_orchestrator.text import is_japanese

# OpenAI's names, accepted as aliases of what is loaded (clients ship with them as defaults).
ALIASES: dict[Stage, tuple[str, ...]] = {
    "stt": ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-transcribe"),
    "tts": ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"),
    "llm": ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1", "gpt-4.1-nano", "gpt-3.5-turbo"),
    "dialogue": ("gpt-4o-audio-preview", "gpt-4o-mini-audio-preview"),
}
# The whole pipeline (speech in, speech out) as one model id.
DIALOGUE_MODEL = "voice-dialogue"
# OpenAI's voice names: each picks the default voice of the text's language.
OPENAI_VOICES = (
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
    "marin",
    "cedar",
)
TASKS: dict[Stage, str] = {
    "stt": "transcription",
    "llm": "chat completion",
    "tts": "speech",
    "dialogue": "spoken dialogue",
}
_NOTES = re.compile(r"\s*\([^)]*\)")


def model_id(name: str) -> str:
    """An engine's model name as a model id: its first word, a path's last part."""
    words = _NOTES.sub("", name).split()
    first = words[0] if words else name
    if first.startswith(("/", "./", "~")):
        first = PurePosixPath(first).name
    return first


@dataclass(frozen=True)
class LoadedModel:
    id: str
    stage: Stage
    root: str
    engine: str
    # The languages this model answers (the LLM's per-language models); None = every other one.
    languages: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()

    def card(self, created: int, as_id: str | None = None) -> ModelCard:
        return ModelCard(
            id=as_id or self.id,
            created=created,
            root=self.root,
            stage=self.stage,
            engine=self.engine,
            aliases=list(self.aliases),
            languages=list(self.languages) if self.languages is not None else None,
        )


@dataclass(frozen=True)
class Voice:
    id: str
    languages: tuple[str, ...]  # empty: whatever the model speaks

    def speaks(self, japanese: bool) -> bool:
        if not self.languages:
            return True
        return "ja" in self.languages if japanese else any(code != "ja" for code in self.languages)


def _unknown_model(name: str, stage: Stage, known: list[str]) -> OrchestratorError:
    return OrchestratorError(
        OrchestratorErrorCode.MODEL_NOT_FOUND,
        f"The model {name[:100]!r} does not exist here or cannot do {TASKS[stage]}; use one of: "
        f"{', '.join(known)}.",
        details={"field": "model", "model": name[:100]},
    )


@dataclass(frozen=True)
class Catalog:
    created: int
    models: tuple[LoadedModel, ...]
    voices: tuple[Voice, ...] = ()
    # The voice an OpenAI voice name (or none) picks, per language ("ja", "en"; "*" = any).
    default_voices: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, infos: dict[str, EngineInfo], created: int) -> Catalog:
        stt, llm, tts = infos["stt"], infos["llm"], infos["tts"]
        models = [
            LoadedModel(model_id(stt.model), "stt", stt.model, stt.engine, aliases=ALIASES["stt"]),
            LoadedModel(model_id(llm.model), "llm", llm.model, llm.engine, aliases=ALIASES["llm"]),
        ]
        routes: dict[str, Any] = llm.extra.get("per_language") or {}
        for language, route in sorted(routes.items()):
            name = str(route.get("model", ""))
            if name and all(model.id != model_id(name) for model in models):
                engine = str(route.get("engine", llm.engine))
                models.append(LoadedModel(model_id(name), "llm", name, engine, languages=(language,)))
        tts_id = str(tts.extra.get("model_id") or model_id(tts.model))
        models.append(LoadedModel(tts_id, "tts", tts.model, tts.engine, aliases=ALIASES["tts"]))
        models.append(
            LoadedModel(
                DIALOGUE_MODEL, "dialogue", "stt -> llm -> tts", "pipeline", aliases=ALIASES["dialogue"]
            )
        )
        voices = tuple(
            Voice(str(voice["id"]), tuple(str(code) for code in voice.get("languages", ())))
            for voice in tts.extra.get("voices", ())
        )
        defaults = {str(key): str(value) for key, value in (tts.extra.get("default_voices") or {}).items()}
        return cls(created, tuple(models), voices, defaults)

    def resolve(self, name: str, stage: Stage) -> LoadedModel:
        """The loaded model a request's `model` names (an id or an alias); 404 MODEL_NOT_FOUND otherwise."""
        candidates = [model for model in self.models if model.stage == stage]
        for model in candidates:
            if name == model.id or name in model.aliases:
                return model
        raise _unknown_model(name, stage, [model.id for model in candidates] + list(ALIASES[stage]))

    def find(self, name: str) -> ModelCard:
        """`GET /v1/models/{id}`: an id or an alias (shown under the name asked for)."""
        for model in self.models:
            if name == model.id or name in model.aliases:
                return model.card(self.created, as_id=name)
        raise OrchestratorError(
            OrchestratorErrorCode.MODEL_NOT_FOUND,
            f"The model {name[:100]!r} does not exist here; GET /v1/models lists the models.",
            details={"field": "model", "model": name[:100]},
        )

    def cards(self) -> list[ModelCard]:
        return [model.card(self.created) for model in self.models]

    def voice_cards(self) -> list[VoiceCard]:
        tts_id = next(model.id for model in self.models if model.stage == "tts")
        return [
            VoiceCard(
                id=voice.id,
                languages=list(voice.languages),
                model=tts_id,
                default_for=sorted(key for key, value in self.default_voices.items() if value == voice.id),
            )
            for voice in self.voices
        ]

    def check_voice(self, name: str) -> None:
        """A voice of the engine or an OpenAI voice name; otherwise a 400 naming the field."""
        if name.lower() not in OPENAI_VOICES and all(voice.id != name for voice in self.voices):
            self.voice_for(name, "")  # raises the unknown-voice error

    def voice_choice(self, name: str) -> Callable[[str], str | None]:
        """Per sentence: the voice `name`, or, for a sentence in a script it cannot read, None (that script's
        default voice)."""

        def choose(text: str) -> str | None:
            try:
                return self.voice_for(name, text)
            except OrchestratorError:
                return None

        return choose

    def voice_for(self, name: str, text: str) -> str | None:
        """The engine voice for a speech request: None (the engine's own choice by the text's script) for an
        OpenAI voice name; a voice of the engine that speaks the text's language; otherwise a clear 400."""
        if name.lower() in OPENAI_VOICES:
            return None
        voice = next((voice for voice in self.voices if voice.id == name), None)
        if voice is None:
            known = [voice.id for voice in self.voices][:30]
            shown = ", ".join([*known, "or an OpenAI voice name (alloy, ...)"])
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST,
                f"Unknown voice {name[:64]!r}; use {shown}.",
                details={"field": "voice"},
            )
        japanese = is_japanese(text)
        if not voice.speaks(japanese):
            fitting = [other.id for other in self.voices if other.speaks(japanese)]
            what = "Japanese" if japanese else "non-Japanese"
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST,
                f"The voice {voice.id!r} speaks {', '.join(voice.languages)} only and cannot read this "
                f"{what} text; use one of: {', '.join(fitting[:30]) or 'none loaded'}.",
                details={"field": "voice", "voice_languages": list(voice.languages)},
            )
        return voice.id


class ModelCatalog:
    """Builds the catalog from the stages' engine infos on first use (a stage that does not answer is that
    stage's 503), then keeps it."""

    def __init__(self, info: Callable[[str], Awaitable[EngineInfo]], created: int) -> None:
        self._info = info
        self._created = created
        self._catalog: Catalog | None = None

    async def get(self) -> Catalog:
        if self._catalog is None:
            infos: dict[str, EngineInfo] = {}
            for stage in ("stt", "llm", "tts"):
                try:
                    infos[stage] = await self._info(stage)
                except OrchestratorError:
                    raise
                except Exception:
                    raise OrchestratorError(
                        STAGE_UNAVAILABLE[stage],
                        f"The {stage.upper()} service did not say which model it runs; retry shortly.",
                        details={"stage": stage},
                        retry_after=1,
                    ) from None
            self._catalog = Catalog.of(infos, self._created)
        return self._catalog
