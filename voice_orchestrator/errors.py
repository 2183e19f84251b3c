"""The one error-code table of the API contract and the exception that carries a code.

Every status the API answers with, the OpenAPI error responses and the metrics' outcome tag come from
`HTTP_STATUS`; README's "Errors" section lists the codes for clients."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class OrchestratorErrorCode(StrEnum):
    INVALID_AUDIO_FORMAT = "INVALID_AUDIO_FORMAT"
    AUDIO_TOO_SHORT = "AUDIO_TOO_SHORT"
    AUDIO_TOO_LONG = "AUDIO_TOO_LONG"
    INVALID_REQUEST = "INVALID_REQUEST"
    CONTEXT_LENGTH_EXCEEDED = "CONTEXT_LENGTH_EXCEEDED"
    UNAUTHORIZED = "UNAUTHORIZED"
    NOT_FOUND = "NOT_FOUND"
    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    UPLOAD_TIMEOUT = "UPLOAD_TIMEOUT"
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    SPEECH_RECOGNITION_FAILED = "SPEECH_RECOGNITION_FAILED"
    TOO_MANY_REQUESTS = "TOO_MANY_REQUESTS"
    STT_SERVICE_UNAVAILABLE = "STT_SERVICE_UNAVAILABLE"
    LLM_SERVICE_UNAVAILABLE = "LLM_SERVICE_UNAVAILABLE"
    TTS_SERVICE_UNAVAILABLE = "TTS_SERVICE_UNAVAILABLE"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    PROCESSING_TIMEOUT = "PROCESSING_TIMEOUT"
    INTERNAL_ERROR = "INTERNAL_ERROR"


HTTP_STATUS: dict[OrchestratorErrorCode, int] = {
    OrchestratorErrorCode.INVALID_AUDIO_FORMAT: 400,
    OrchestratorErrorCode.AUDIO_TOO_SHORT: 400,
    OrchestratorErrorCode.AUDIO_TOO_LONG: 400,
    OrchestratorErrorCode.INVALID_REQUEST: 400,
    OrchestratorErrorCode.CONTEXT_LENGTH_EXCEEDED: 400,
    OrchestratorErrorCode.UNAUTHORIZED: 401,
    OrchestratorErrorCode.NOT_FOUND: 404,
    OrchestratorErrorCode.MODEL_NOT_FOUND: 404,
    OrchestratorErrorCode.METHOD_NOT_ALLOWED: 405,
    OrchestratorErrorCode.UPLOAD_TIMEOUT: 408,
    OrchestratorErrorCode.PAYLOAD_TOO_LARGE: 413,
    OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED: 422,
    OrchestratorErrorCode.TOO_MANY_REQUESTS: 429,
    OrchestratorErrorCode.STT_SERVICE_UNAVAILABLE: 503,
    OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE: 503,
    OrchestratorErrorCode.TTS_SERVICE_UNAVAILABLE: 503,
    OrchestratorErrorCode.SERVICE_UNAVAILABLE: 503,
    OrchestratorErrorCode.PROCESSING_TIMEOUT: 504,
    OrchestratorErrorCode.INTERNAL_ERROR: 500,
}

# Codes whose responses carry `Retry-After`: the client may simply try again later.
RETRYABLE: frozenset[OrchestratorErrorCode] = frozenset(
    {
        OrchestratorErrorCode.TOO_MANY_REQUESTS,
        OrchestratorErrorCode.STT_SERVICE_UNAVAILABLE,
        OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE,
        OrchestratorErrorCode.TTS_SERVICE_UNAVAILABLE,
        OrchestratorErrorCode.SERVICE_UNAVAILABLE,
    }
)

# Which code a failing stage maps to, so the pipeline and the deployments agree on one table.
STAGE_UNAVAILABLE: dict[str, OrchestratorErrorCode] = {
    "stt": OrchestratorErrorCode.STT_SERVICE_UNAVAILABLE,
    "llm": OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE,
    "tts": OrchestratorErrorCode.TTS_SERVICE_UNAVAILABLE,
}


def stage_unavailable(stage: str, retry_after: int, reason: str | None = None) -> OrchestratorError:
    """A stage that cannot serve now: its own 503, with when to retry (and why, where known)."""
    details: dict[str, Any] = {"stage": stage}
    if reason:
        details["reason"] = reason
    return OrchestratorError(
        STAGE_UNAVAILABLE[stage],
        f"The {stage.upper()} service is unavailable; retry shortly.",
        details=details,
        retry_after=retry_after,
    )


# The OpenAI-compatible routes (`/v1/...`) answer the same errors in OpenAI's shape, so its SDKs raise their
# typed exceptions (chosen by HTTP status): `code` is our error code, `type` OpenAI's error type.
OPENAI_PREFIX = "/v1"
_OPENAI_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
}


def is_openai_path(path: str) -> bool:
    return path == OPENAI_PREFIX or path.startswith(f"{OPENAI_PREFIX}/")


def openai_error_type(status: int) -> str:
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


# Where OpenAI has a code of its own for one of ours, /v1 answers with OpenAI's (its SDKs and apps know it).
OPENAI_CODES = {OrchestratorErrorCode.CONTEXT_LENGTH_EXCEEDED.value: "context_length_exceeded"}


def openai_error(
    code: str, message: str, details: dict[str, Any] | None, status: int
) -> dict[str, dict[str, str | None]]:
    """`{"error": {"message", "type", "param", "code"}}`; `param` is the request field at fault, if one is."""
    field = (details or {}).get("field")
    return {
        "error": {
            "message": message,
            "type": openai_error_type(status),
            "param": field if isinstance(field, str) else None,
            "code": OPENAI_CODES.get(code, code),
        }
    }


class OrchestratorError(Exception):
    """An error the API reports with its own code; `message` is safe to show to clients."""

    def __init__(
        self,
        code: OrchestratorErrorCode,
        message: str,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.retry_after = retry_after

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments need help to survive pickling across Ray processes.
        return (_rebuild_error, (self.code, self.message, self.details, self.retry_after))

    def __repr__(self) -> str:
        return f"OrchestratorError({self.code.value}, {self.message!r})"


def _rebuild_error(
    code: OrchestratorErrorCode, message: str, details: dict[str, Any] | None, retry_after: int | None
) -> OrchestratorError:
    return OrchestratorError(code, message, details=details, retry_after=retry_after)


def invalid_request(message: str, **details: object) -> OrchestratorError:
    """INVALID_REQUEST (400), with what names the problem (`field`, a limit) as details."""
    return OrchestratorError(OrchestratorErrorCode.INVALID_REQUEST, message, details=details or None)


def unknown_voice(voice: str, known: list[str]) -> OrchestratorError:
    """A request asked for a voice the text-to-speech engine does not have (a client error, not a 503)."""
    shown = ", ".join(known[:20]) or "none: this engine has one voice per language"
    return OrchestratorError(
        OrchestratorErrorCode.INVALID_REQUEST,
        f"Unknown voice {voice[:64]!r}; available voices: {shown}.",
        details={"field": "voice"},
    )
