"""Reading a dialogue request: the multipart body, under a byte limit and a read deadline.

The body is parsed as it arrives and never buffered whole: an upload over `max_upload_bytes` is refused at the
byte that crosses the limit (413), and one that arrives too slowly — past `upload_timeout_seconds`, or below
`upload_min_bytes_per_second` on average once its first seconds are over — is refused with 408, so a client
trickling bytes holds nothing for long.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import FormData, UploadFile

from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.settings import IngressSettings
from voice_orchestrator.turn import normalize_session_id


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    timeout_s: float
    min_bytes_per_second: float
    # An upload's first seconds are not judged by its average rate: connections start slowly.
    rate_grace_s: float = 5.0

    @classmethod
    def of(cls, settings: IngressSettings) -> UploadLimits:
        return cls(
            settings.max_upload_bytes, settings.upload_timeout_seconds, settings.upload_min_bytes_per_second
        )


class DialogueForm(BaseModel):
    """The fields of a dialogue request, checked."""

    model_config = ConfigDict(frozen=True)

    audio: bytes
    language: str | None = None  # a Whisper code; None = detect
    session_id: str | None = None
    voice: str | None = None


def _too_slow(limits: UploadLimits, received: int, elapsed: float) -> OrchestratorError:
    return OrchestratorError(
        OrchestratorErrorCode.UPLOAD_TIMEOUT,
        f"The upload did not arrive in time (within {limits.timeout_s:g} s, at least "
        f"{limits.min_bytes_per_second:g} bytes/s).",
        details={"received_bytes": received, "elapsed_s": round(elapsed, 1)},
    )


def limited_request(request: Request, limits: UploadLimits) -> Request:
    """The request, its body read within the byte limit and the read deadline (413 / 408 as it arrives)."""
    too_large = OrchestratorError(
        OrchestratorErrorCode.PAYLOAD_TOO_LARGE,
        f"The upload exceeds the {limits.max_bytes} byte limit.",
        details={"max_upload_bytes": limits.max_bytes},
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_bytes:
        raise too_large
    started = time.monotonic()
    received = 0
    receive = request.receive

    async def guarded_receive() -> dict[str, Any]:
        nonlocal received
        # The next bytes must come before the deadline, and before the average rate falls below the minimum.
        rate_limit = max(limits.rate_grace_s, received / limits.min_bytes_per_second)
        wait = min(limits.timeout_s, rate_limit) - (time.monotonic() - started)
        try:
            async with asyncio.timeout(max(wait, 0.0)):
                message: dict[str, Any] = dict(await receive())
        except TimeoutError:
            raise _too_slow(limits, received, time.monotonic() - started) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limits.max_bytes:
                raise too_large
        return message

    return Request(request.scope, guarded_receive)


async def read_form(
    request: Request, limits: UploadLimits, file_field: str = "audio", max_fields: int = 8
) -> FormData:
    """Parse the multipart body (one file, named `file_field`) within the byte limit and the read deadline."""
    limited = limited_request(request, limits)
    try:
        return await limited.form(max_files=1, max_fields=max_fields)
    except OrchestratorError:
        raise
    except Exception as error:  # malformed multipart, wrong content type, too many parts
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
            f"Send the audio as multipart/form-data with a file field named {file_field!r}.",
            details={"field": file_field, "reason": str(error)[:200] or type(error).__name__},
        ) from None


def _text_field(form: FormData, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


async def read_dialogue_form(request: Request, limits: UploadLimits) -> DialogueForm:
    """The upload, `language`, the session id (form field or X-Session-ID header) and the voice."""
    form = await read_form(request, limits)
    upload = form.get("audio")
    if not isinstance(upload, UploadFile):
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_AUDIO_FORMAT,
            "The request has no file field named 'audio'.",
            details={"field": "audio"},
        )
    session = _text_field(form, "session_id")
    raw_voice = _text_field(form, "voice") or ""
    voice = raw_voice.strip() or None
    if len(raw_voice) > 64:  # as the spec says: the field as sent
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST, "voice is too long.", details={"field": "voice"}
        )
    return DialogueForm(
        audio=await upload.read(),
        language=_text_field(form, "language"),
        session_id=normalize_session_id(
            session if session is not None else request.headers.get("x-session-id")
        ),
        voice=voice,
    )
