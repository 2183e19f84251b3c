"""The fields of the Wyoming events the door reads, checked (pydantic) before use: a wrong type is a typed
refusal naming the field, never an exception from deep inside. Extra fields are ignored, as Wyoming peers do
(the protocol grows by adding fields: context, vad_sensitivity, transcript_names ...). Events sent are the
`wyoming` package's own classes."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode

MAX_TEXT_CHARS = 100_000  # the live `max_speech_input_chars` is checked after this structural bound


class _EventData(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TranscribeData(_EventData):
    name: str | None = Field(default=None, max_length=256)
    language: str | None = Field(default=None, max_length=32)


class VoiceData(_EventData):
    name: str | None = Field(default=None, max_length=256)
    language: str | None = Field(default=None, max_length=32)
    speaker: str | None = Field(default=None, max_length=256)


class SynthesizeData(_EventData):
    text: str = Field(max_length=MAX_TEXT_CHARS)
    voice: VoiceData | None = None


class SynthesizeStartData(_EventData):
    voice: VoiceData | None = None


class SynthesizeChunkData(_EventData):
    text: str = Field(max_length=MAX_TEXT_CHARS)


DataT = TypeVar("DataT", bound=_EventData)


def parse(model: type[DataT], event_type: str, data: dict[str, Any]) -> DataT:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST,
            f"The {event_type} event is invalid ({field or 'data'}: {first['msg']}).",
            details={"field": field, "event": event_type},
        ) from None


def base_language(language: str | None) -> str | None:
    """Home Assistant may name a region ("en-US", "ja_JP"): the recogniser and voices go by the language."""
    if language is None:
        return None
    return language.replace("_", "-").split("-")[0]
