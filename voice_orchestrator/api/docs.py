"""OpenAPI metadata of the routes. Error responses come from the one error table; the stream's event schemas
are added to the document's components so every `$ref` resolves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response, StreamingResponse
from pydantic.json_schema import models_json_schema

from voice_orchestrator.api.errors import ROUTE_ERRORS, openapi_error_responses
from voice_orchestrator.api.openai.docs import DOCUMENTED_MODELS
from voice_orchestrator.errors import OrchestratorErrorCode
from voice_orchestrator.protocol import (
    SessionDeleted,
    StatusResponse,
    StreamAudioEvent,
    StreamDoneEvent,
    StreamErrorEvent,
    StreamTranscriptEvent,
)
from voice_orchestrator.text import WHISPER_LANGUAGES
from voice_orchestrator.turn import SESSION_ID

STREAM_EVENTS = (StreamTranscriptEvent, StreamAudioEvent, StreamDoneEvent, StreamErrorEvent)
_TEXT_HEADER = {"description": "UTF-8, percent-encoded", "schema": {"type": "string"}}
_NUMBER_HEADER = {"schema": {"type": "number"}}
_STRING = {"schema": {"type": "string"}}
# The input rules as the app applies them (pipeline.normalize_session_id / normalize_language): surrounding
# whitespace (what Python's str.strip removes) is dropped, an empty value means "absent", the language code is
# case-insensitive. Patterns are ECMA-262 as OpenAPI asks, so case folding is spelled out letter by letter.
_SPACE = r"[\s\x1c-\x1f]*"
_SESSION_ID = SESSION_ID.pattern
_SESSION_ID_RULE = "1-128 letters, digits, '_', '-', '.' or ':' (surrounding whitespace ignored)"
_OPTIONAL_SESSION = {
    "type": "string",
    "pattern": f"^{_SPACE}({_SESSION_ID})?{_SPACE}$",
    "description": f"{_SESSION_ID_RULE}; empty = stateless, anything else is a 400 INVALID_REQUEST",
}
_LANGUAGE_CODES = "|".join(
    "".join(f"[{letter}{letter.upper()}]" for letter in code) for code in sorted({*WHISPER_LANGUAGES, "auto"})
)
_SESSION_HEADER = {
    "description": "The conversation's id, as sent (form field session_id or this header)",
    "schema": _OPTIONAL_SESSION,
}
# A dialogue runs every stage: it can answer with any error of the table.
_DIALOGUE_ERRORS = tuple(OrchestratorErrorCode)

_DIALOGUE_FORM: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["audio"],
                    "properties": {
                        "audio": {
                            "type": "string",
                            "format": "binary",
                            "description": "WAV, FLAC, OGG, MP3, WebM or M4A; decided from the bytes",
                        },
                        "language": {
                            "type": "string",
                            "pattern": f"^{_SPACE}({_LANGUAGE_CODES})?{_SPACE}$",
                            "description": "Whisper language code (ja, en, ...; case-insensitive); absent, "
                            "empty or 'auto' = detect; anything else is a 400 INVALID_REQUEST",
                        },
                        "session_id": {
                            **_OPTIONAL_SESSION,
                            "description": "Keeps the conversation's last turns as context (also the "
                            f"X-Session-ID header; this field wins): {_SESSION_ID_RULE}; absent or empty = "
                            "stateless, anything else is a 400 INVALID_REQUEST",
                        },
                        "voice": {
                            "type": "string",
                            "maxLength": 64,
                            "description": "A voice of the TTS engine (Kokoro: jf_alpha, jm_kumo, ...; "
                            "OpenJTalk: mei, the fast Japanese voice; Coqui: a speaker name); absent = the "
                            "configured voice",
                        },
                    },
                }
            }
        },
    },
    "parameters": [{"name": "X-Session-ID", "in": "header", "required": False, **_SESSION_HEADER}],
}

DIALOGUE_DOCS: dict[str, Any] = {
    "summary": "Answer a spoken question with speech",
    "response_class": Response,
    "responses": {
        200: {
            "description": "The spoken reply, PCM16 mono WAV",
            "content": {"audio/wav": {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                **{
                    f"X-Processing-Time-{stage}": {"description": "milliseconds", **_NUMBER_HEADER}
                    for stage in ("Total", "STT", "LLM", "TTS")
                },
                "X-Input-Text": _TEXT_HEADER,
                "X-Input-Language": _STRING,
                "X-Input-Duration": {"description": "seconds", **_NUMBER_HEADER},
                "X-Output-Text": _TEXT_HEADER,
                "X-Output-Duration": {"description": "seconds", **_NUMBER_HEADER},
                "X-Output-Sample-Rate": {"description": "Hz", "schema": {"type": "integer"}},
                "X-Request-ID": _STRING,
                "X-Session-ID": _SESSION_HEADER,
            },
        },
        **openapi_error_responses(*_DIALOGUE_ERRORS),
    },
    "openapi_extra": _DIALOGUE_FORM,
}
STREAM_DOCS: dict[str, Any] = {
    "summary": "Answer a spoken question with speech, sentence by sentence as it is produced",
    "description": "Same input and errors (before the first byte) as the dialogue route. The body is NDJSON: "
    "a `transcript` event, one `audio` event per sentence (base64 PCM16 mono WAV, playable on its own), then "
    "`done` with the timings, or `error` (the error body's fields) when a stage fails mid-stream.",
    "response_class": StreamingResponse,
    "responses": {
        200: {
            "description": "NDJSON events: transcript, audio..., done | error",
            "content": {
                "application/x-ndjson": {
                    "schema": {
                        "oneOf": [
                            {"$ref": f"#/components/schemas/{event.__name__}"} for event in STREAM_EVENTS
                        ]
                    }
                }
            },
            "headers": {
                "X-Input-Text": _TEXT_HEADER,
                "X-Input-Language": _STRING,
                "X-Session-ID": _SESSION_HEADER,
                "X-Request-ID": _STRING,
            },
        },
        **openapi_error_responses(*_DIALOGUE_ERRORS),
    },
    "openapi_extra": _DIALOGUE_FORM,
}
SESSION_DOCS: dict[str, Any] = {
    "summary": "Forget a conversation",
    "response_model": SessionDeleted,
    "responses": openapi_error_responses(*ROUTE_ERRORS),
}
# Path parameters the routes take as plain `str` and check themselves: their documented rule (FastAPI's
# openapi_extra would append a second parameter of the same name, so complete_document replaces it).
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "session_id": {
        "name": "session_id",
        "in": "path",
        "required": True,
        "description": f"{_SESSION_ID_RULE}; anything else is a 400 INVALID_REQUEST",
        "schema": {"type": "string", "pattern": f"^{_SPACE}{_SESSION_ID}{_SPACE}$"},
    }
}
STATUS_DOCS: dict[str, Any] = {
    "summary": "Health of every stage",
    "response_model": StatusResponse,
    "responses": {
        503: {"model": StatusResponse, "description": "unhealthy: some stage cannot serve"},
        **openapi_error_responses(*ROUTE_ERRORS),
    },
}


def complete_document(app: FastAPI) -> None:
    """Make the generated document tell the truth: add the stream's event models to its components (FastAPI
    only adds models a route declares as its response), so every `$ref` resolves; give path parameters their
    rule; drop FastAPI's default 422 for bad parameters, which this API answers with a 400 INVALID_REQUEST
    (422 means no speech here)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        _, schemas = models_json_schema(
            [(event, "serialization") for event in STREAM_EVENTS]
            + [(model, "validation") for model in DOCUMENTED_MODELS],
            ref_template="#/components/schemas/{model}",
        )
        components = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in schemas.get("$defs", {}).items():
            components.setdefault(name, schema)
        for operations in document.get("paths", {}).values():
            for operation in operations.values():
                operation["parameters"] = [
                    PATH_PARAMETERS.get(parameter["name"], parameter)
                    if parameter["in"] == "path"
                    else parameter
                    for parameter in operation.get("parameters", [])
                ]
                if not operation["parameters"]:
                    del operation["parameters"]
                default = operation.get("responses", {}).get("422", {})
                if "HTTPValidationError" in str(default.get("content", "")):
                    del operation["responses"]["422"]
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
