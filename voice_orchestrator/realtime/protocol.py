"""The OpenAI Realtime protocol (GA, as the `openai` 3.x SDK sends and parses it): the client events this
server understands, the session configuration they set, and the server events it sends.

Client events are parsed leniently (unknown fields ignored, as OpenAI's server does), but every value that is
used is checked: a wrong one is an `error` event naming the field, and the socket stays open. The beta
protocol's spellings that the SDK and older clients still send (`input_audio_format: "pcm16"`, a flat
`turn_detection`, `modalities`, `voice` at the top of the session) are read as their GA equivalents.
Server events are plain dicts built here, in the GA shape only.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voice_orchestrator.errors import (
    OrchestratorError,
    OrchestratorErrorCode,
    invalid_request,
    openai_error_type,
)
from voice_orchestrator.realtime.codecs import AudioFormat

# What the socket's session reports as its model, and the names a client may connect with.
REALTIME_MODEL = "voice-dialogue"
Modality = Literal["text", "audio"]
BETA_FORMATS: dict[str, AudioFormat] = {
    "pcm16": "audio/pcm",
    "g711_ulaw": "audio/pcmu",
    "g711_alaw": "audio/pcma",
}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


def _audio_only() -> list[Modality]:
    return ["audio"]


class TurnDetection(_Lenient):
    """`audio.input.turn_detection`: server VAD (semantic VAD is refused with the reason)."""

    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float = Field(default=0.5, gt=0.0, le=1.0)
    prefix_padding_ms: int = Field(default=300, ge=0, le=5_000)
    silence_duration_ms: int = Field(default=500, ge=0, le=10_000)
    create_response: bool = True
    interrupt_response: bool = True
    # After a response, with no new speech for this long, the server commits an empty turn (OpenAI asks the
    # model to go on); here it only says so: `input_audio_buffer.timeout_triggered`. None: off.
    idle_timeout_ms: int | None = Field(default=None, ge=5_000, le=30_000)


class SessionConfig(_Lenient):
    """The session as it stands: what `session.update` changes, and what `session.created` reports."""

    instructions: str = Field(default="", max_length=16_384)
    output_modalities: list[Modality] = Field(default_factory=_audio_only, min_length=1, max_length=1)
    input_format: AudioFormat = "audio/pcm"
    output_format: AudioFormat = "audio/pcm"
    # Language of the user's speech (a Whisper code); None: detected per turn.
    language: str | None = None
    turn_detection: TurnDetection | None = Field(default_factory=TurnDetection)
    voice: str = "alloy"
    max_output_tokens: int | None = Field(default=None, ge=1)

    def describe(self, session_id: str) -> dict[str, Any]:
        """The GA `session` object."""
        detection = self.turn_detection.model_dump() if self.turn_detection is not None else None
        return {
            "type": "realtime",
            "object": "realtime.session",
            "id": session_id,
            "model": REALTIME_MODEL,
            "instructions": self.instructions,
            "output_modalities": list(self.output_modalities),
            "max_output_tokens": self.max_output_tokens or "inf",
            "audio": {
                "input": {
                    "format": _format_object(self.input_format),
                    "transcription": {"model": "whisper-1", "language": self.language},
                    "turn_detection": detection,
                    "noise_reduction": None,
                },
                "output": {"format": _format_object(self.output_format), "voice": self.voice, "speed": 1.0},
            },
            "tools": [],
            "tool_choice": "auto",
        }


def _format_object(fmt: AudioFormat) -> dict[str, Any]:
    return {"type": fmt, "rate": 24_000} if fmt == "audio/pcm" else {"type": fmt}


def invalid(message: str, field: str | None = None) -> OrchestratorError:
    return invalid_request(message, field=field) if field else invalid_request(message)


def _audio_format(value: Any, field: str) -> AudioFormat:
    """A format object (`{"type": "audio/pcm", "rate": 24000}`) or a beta string (`"pcm16"`)."""
    if isinstance(value, str):
        value = {"type": BETA_FORMATS.get(value, value)}
    if not isinstance(value, dict):
        raise invalid(f"{field} must be an audio format object.", field)
    kind = value.get("type", "audio/pcm")
    if kind not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
        raise invalid(
            f"Unsupported audio format {str(kind)[:40]!r}; use audio/pcm, audio/pcmu or audio/pcma.", field
        )
    if kind == "audio/pcm" and value.get("rate", 24_000) != 24_000:
        raise invalid("audio/pcm is 24000 Hz only.", field)
    fmt: AudioFormat = kind
    return fmt


def _dict(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid(f"{field} must be an object.", field)
    return value


def updated_session(
    config: SessionConfig, session: Any, supported_language: Collection[str]
) -> SessionConfig:
    """The session after a `session.update`'s `session` (GA or beta shape); fields it leaves out keep their
    values. Raises the error event's error, naming the field, and then nothing changes."""
    given = _dict(session, "session")
    if given.get("type", "realtime") != "realtime":
        raise invalid("Only realtime sessions are served here (session.type 'realtime').", "session.type")
    changes: dict[str, Any] = {}
    if "instructions" in given:
        changes["instructions"] = given["instructions"] or ""
    modalities = given.get("output_modalities", given.get("modalities"))
    if modalities is not None:
        changes["output_modalities"] = _modalities(modalities, "session.output_modalities")
    if "max_output_tokens" in given:
        changes["max_output_tokens"] = _max_tokens(given["max_output_tokens"])
    audio = _dict(given.get("audio"), "session.audio")
    heard = _dict(audio.get("input"), "session.audio.input")
    spoken = _dict(audio.get("output"), "session.audio.output")
    beta = {
        "format": given.get("input_audio_format"),
        "transcription": given.get("input_audio_transcription"),
        "out_format": given.get("output_audio_format"),
        "voice": given.get("voice"),
    }
    if (fmt := heard.get("format", beta["format"])) is not None:
        changes["input_format"] = _audio_format(fmt, "session.audio.input.format")
    if (fmt := spoken.get("format", beta["out_format"])) is not None:
        changes["output_format"] = _audio_format(fmt, "session.audio.output.format")
    if (voice := spoken.get("voice", beta["voice"])) is not None:
        voice_id = voice.get("id") if isinstance(voice, dict) else voice
        if not isinstance(voice_id, str) or not 0 < len(voice_id) <= 64:
            raise invalid("session.audio.output.voice must be a voice name.", "session.audio.output.voice")
        changes["voice"] = voice_id
    transcription = heard.get("transcription", beta["transcription"])
    if isinstance(transcription, dict) and "language" in transcription:
        changes["language"] = _language(transcription["language"], supported_language)
    if "turn_detection" in heard or "turn_detection" in given:
        changes["turn_detection"] = _turn_detection(heard.get("turn_detection", given.get("turn_detection")))
    try:
        return SessionConfig.model_validate({**config.model_dump(), **changes})
    except ValidationError as error:
        raise validation_error(error, "session") from None


def _modalities(value: Any, field: str) -> list[Modality]:
    if not isinstance(value, list) or not value or any(item not in ("text", "audio") for item in value):
        raise invalid(f"{field} must be ['audio'] or ['text'].", field)
    return ["audio"] if "audio" in value else ["text"]


def _max_tokens(value: Any) -> int | None:
    if value in (None, "inf"):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise invalid("max_output_tokens must be a positive integer or 'inf'.", "max_output_tokens")


def _language(value: Any, supported: Collection[str]) -> str | None:
    if value in (None, "", "auto"):
        return None
    if not isinstance(value, str) or value.strip().lower() not in supported:
        raise invalid(
            "audio.input.transcription.language must be a Whisper language code such as 'ja' or 'en'.",
            "session.audio.input.transcription.language",
        )
    return value.strip().lower()


def _turn_detection(value: Any) -> TurnDetection | None:
    if value is None:
        return None
    given = _dict(value, "session.audio.input.turn_detection")
    if given.get("type", "server_vad") == "semantic_vad":
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST,
            "semantic_vad is not supported here (no turn-end model ships with this server); use "
            "{'type': 'server_vad'} with threshold, prefix_padding_ms and silence_duration_ms, or null for "
            "manual turns.",
            details={"field": "session.audio.input.turn_detection.type"},
        )
    try:
        return TurnDetection.model_validate({key: item for key, item in given.items() if item is not None})
    except ValidationError as error:
        raise validation_error(error, "session.audio.input.turn_detection") from None


def validation_error(error: ValidationError, prefix: str) -> OrchestratorError:
    first = error.errors()[0]
    where = ".".join(str(part) for part in (prefix, *first["loc"]))
    return invalid(f"{where}: {first['msg']}.", where)


# --- client events that carry more than a type ------------------------------------------------------------


class AppendAudio(_Lenient):
    audio: str = Field(max_length=32 * 1024 * 1024)


class TruncateItem(_Lenient):
    item_id: str
    content_index: int = Field(default=0, ge=0)
    audio_end_ms: int = Field(ge=0)


class DeleteItem(_Lenient):
    item_id: str


class ResponseOptions(_Lenient):
    """`response.create`'s `response`: what this one response may change."""

    instructions: str | None = Field(default=None, max_length=16_384)
    output_modalities: list[Modality] | None = None
    modalities: list[Modality] | None = None  # beta
    conversation: str | None = None  # "auto" (default) or "none": out of band, kept out of the conversation
    max_output_tokens: int | Literal["inf"] | None = None
    metadata: dict[str, str] | None = None


def user_text(item: Any, max_chars: int) -> str:
    """The text of a `conversation.item.create`'s user message (its `input_text` parts, joined)."""
    given = _dict(item, "item")
    if given.get("type", "message") != "message" or given.get("role") not in ("user", "system", "assistant"):
        raise invalid("Only message items (role user, assistant or system) can be added here.", "item.type")
    content = given.get("content")
    if not isinstance(content, list) or not content:
        raise invalid("item.content must be a non-empty list of parts.", "item.content")
    texts: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in ("input_text", "text", "output_text") or not isinstance(part.get("text"), str):
            raise invalid(
                "Only text parts (input_text) can be added as items; speech goes in input_audio_buffer.",
                "item.content",
            )
        texts.append(part["text"])
    text = "\n".join(texts).strip()
    if not text:
        raise invalid("item.content has no text.", "item.content")
    if len(text) > max_chars:
        raise invalid(f"item.content is longer than {max_chars} characters.", "item.content")
    return text


# --- server events ----------------------------------------------------------------------------------------


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(error: OrchestratorError, client_event_id: str | None = None) -> dict[str, Any]:
    """An `error` event: OpenAI's fields (type, code, message, param, event_id) with our error code."""
    field = (error.details or {}).get("field")
    body: dict[str, Any] = {
        "type": openai_error_type(error.http_status),
        "code": error.code.value,
        "message": error.message,
        "param": field if isinstance(field, str) else None,
        "event_id": client_event_id,
    }
    if error.details:
        body["details"] = error.details
    if error.retry_after is not None:
        body["retry_after"] = error.retry_after
    return event("error", error=body)


Role = Literal["user", "assistant", "system"]


def message_item(
    item_id: str,
    role: Role,
    *,
    text: str | None = None,
    transcript: str | None = None,
    audio: bool = False,
    status: Literal["completed", "incomplete", "in_progress"] = "completed",
) -> dict[str, Any]:
    """A conversation item as the protocol shows it (never with its audio bytes)."""
    if role == "assistant":
        kind = "output_audio" if audio else "output_text"
    else:
        kind = "input_audio" if audio else "input_text"
    part: dict[str, Any] = {"type": kind}
    if audio:
        part["transcript"] = transcript
    else:
        part["text"] = text or ""
    content = [part] if (audio or text is not None) else []
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "role": role,
        "status": status,
        "content": content,
    }
