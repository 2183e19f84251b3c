"""The one place where a request (or, later, a connection) is let in, for every front door: the API key,
admission, the body read under the upload limits, and the one refusal logger.

    gate.authorize(request.headers)                       # 401 without the key (when one is set)
    form = await gate.read(request, read_dialogue_form)   # 429 before a byte when full; counted as an upload
    with gate.admit():                                    # a dialogue slot, only once the body is here
        ...

A realtime socket takes a session slot for its life (`connect`, 429 at the upgrade when none is free) and a
dialogue slot for each answer it makes (`admit`), so sockets and uploads share one bound on pipeline work.

Every route that reads a body reads it *before* it takes a dialogue slot, so a slow upload never holds one;
the limits come from the live settings each time (no copy to push on `reconfigure()`).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import TypeVar

from fastapi import Request

from voice_orchestrator.admission import DialogueSlots
from voice_orchestrator.api.errors import internal_error
from voice_orchestrator.api.uploads import UploadLimits
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.metrics import (
    DIALOGUES_IN_FLIGHT,
    DIALOGUES_LIMIT,
    REALTIME_SESSIONS,
    REALTIME_SESSIONS_LIMIT,
    Meter,
    MetricSpec,
)
from voice_orchestrator.settings import IngressSettings, Live

T = TypeVar("T")
# Browsers cannot set headers on a WebSocket: OpenAI's browser clients send the key as a subprotocol.
WEBSOCKET_KEY_PREFIX = "openai-insecure-api-key."


def logged_refusal(
    log: logging.Logger, what: str, error: Exception, request_id: str, started: float, **fields: str
) -> OrchestratorError:
    """The typed error a request is refused with (INTERNAL_ERROR for anything unexpected, its traceback in
    the log only, never to the client), logged at WARNING (4xx) or ERROR (5xx) with `fields`."""
    if not isinstance(error, OrchestratorError):
        log.error(
            f"{what} failed",
            exc_info=error,
            extra={"request_id": request_id, "error_code": OrchestratorErrorCode.INTERNAL_ERROR.value},
        )
        error = internal_error()
    log.log(
        logging.WARNING if error.http_status < 500 else logging.ERROR,
        f"{what} refused: %s",
        error.message,
        extra={
            "request_id": request_id,
            "error_code": error.code.value,
            "status_code": error.http_status,
            **fields,
            "duration_ms": round((time.perf_counter() - started) * 1000.0, 1),
        },
    )
    return error


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The API key a client presented: `Authorization: Bearer <key>`, or on a WebSocket upgrade from a
    browser the subprotocol `openai-insecure-api-key.<key>`."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    for protocol in headers.get("sec-websocket-protocol", "").split(","):
        if protocol.strip().startswith(WEBSOCKET_KEY_PREFIX):
            return protocol.strip().removeprefix(WEBSOCKET_KEY_PREFIX)
    return None


class Admission:
    """One slot (a dialogue's, or a realtime session's), held until `release()` (idempotent) or the end of a
    `with` block."""

    def __init__(self, gate: Gate, slots: DialogueSlots | None = None) -> None:
        self._gate = gate
        self._slots = slots or gate.dialogues
        self._slots.acquire()
        gate.record_in_flight()
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()
            self._gate.record_in_flight()

    def __enter__(self) -> Admission:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


class Gate:
    def __init__(self, settings: Live[IngressSettings], meter: Meter) -> None:
        self._settings = settings
        self._meter = meter
        self.dialogues = DialogueSlots(
            lambda: settings.current.max_concurrent_dialogues, lambda: settings.current.retry_after_seconds
        )
        self.uploads = DialogueSlots(
            lambda: settings.current.max_concurrent_uploads,
            lambda: settings.current.retry_after_seconds,
            "uploads",
        )
        self.sessions = DialogueSlots(
            lambda: settings.current.max_realtime_sessions,
            lambda: settings.current.retry_after_seconds,
            "realtime_sessions",
        )

    @property
    def settings(self) -> IngressSettings:
        return self._settings.current

    def authorize(self, headers: Mapping[str, str]) -> None:
        api_key = self.settings.api_key
        if api_key is None:
            return
        key = presented_key(headers)
        if key is None or not hmac.compare_digest(key.encode(), api_key.get_secret_value().encode()):
            raise OrchestratorError(
                OrchestratorErrorCode.UNAUTHORIZED,
                "Missing or wrong API key: send 'Authorization: Bearer <key>'.",
            )

    async def read(self, request: Request, reader: Callable[[Request, UploadLimits], Awaitable[T]]) -> T:
        """The request's body by `reader`, under the upload limits and counted as an upload, not yet as a
        dialogue. A full server refuses before reading a byte (and `admit` refuses again after)."""
        if self.dialogues.full:
            raise self.dialogues.refusal()
        self.uploads.acquire()
        try:
            return await reader(request, UploadLimits.of(self.settings))
        finally:
            self.uploads.release()

    def admit(self) -> Admission:
        """A dialogue slot (429 when none is free)."""
        return Admission(self)

    def connect(self) -> Admission:
        """A realtime session slot (429 when none is free), held while the socket is open."""
        return Admission(self, self.sessions)

    def record_in_flight(self) -> None:
        self._meter.record(DIALOGUES_IN_FLIGHT, float(self.dialogues.active))
        self._meter.record(REALTIME_SESSIONS, float(self.sessions.active))

    def gauges(self) -> list[tuple[MetricSpec, float]]:
        return [
            (DIALOGUES_LIMIT, float(self.dialogues.limit)),
            (DIALOGUES_IN_FLIGHT, float(self.dialogues.active)),
            (REALTIME_SESSIONS_LIMIT, float(self.sessions.limit)),
            (REALTIME_SESSIONS, float(self.sessions.active)),
        ]
