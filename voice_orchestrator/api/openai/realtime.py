"""`GET /v1/realtime`: the realtime socket's door. The upgrade passes the gate (API key as a Bearer header or
the browser's `openai-insecure-api-key.` subprotocol, the model, a session slot) or is refused with the JSON
error as an HTTP response; then the socket's messages are pumped into one `RealtimeSession` until the client
leaves, goes idle, or the session reaches its length — and then everything it started stops.

Close codes: 1000 (the client closed, idle, or the session reached its time limit — the reason says which),
1009 (a message over `realtime_max_message_bytes`), 1008 / 1013 (a refused upgrade, only where the server
cannot send an HTTP denial response).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from voice_orchestrator.api.errors import error_body, error_response
from voice_orchestrator.api.gate import logged_refusal
from voice_orchestrator.api.openai.catalog import DIALOGUE_MODEL
from voice_orchestrator.api.openai.gateway import OpenAIGateway
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.metrics import OPENAI_REQUESTS, Meter, outcome_of
from voice_orchestrator.protocol import ReplyRequest, TokenUsage
from voice_orchestrator.realtime.protocol import error_event, new_id
from voice_orchestrator.realtime.session import RealtimeSession, SessionClosed, SessionLimits
from voice_orchestrator.stages import ChatModelStage
from voice_orchestrator.turn import VoiceChoice, normalize_session_id

logger = logging.getLogger("voice_orchestrator.realtime")
REALTIME_ROUTE = "/v1/realtime"
ROUTE_TAG = "realtime"


def check_model(model: str | None) -> None:
    """Ours, or any of OpenAI's realtime model names (what existing clients are configured with)."""
    if model is None or model == DIALOGUE_MODEL or "realtime" in model.lower():
        return
    raise OrchestratorError(
        OrchestratorErrorCode.MODEL_NOT_FOUND,
        f"The model {model[:100]!r} cannot hold a realtime session here; use {DIALOGUE_MODEL!r} "
        "(or an OpenAI realtime model name, which means the same).",
        details={"field": "model", "model": model[:100]},
    )


class RealtimeService:
    def __init__(self, gateway: OpenAIGateway, llm: ChatModelStage, meter: Meter) -> None:
        self._gateway = gateway
        self._llm = llm
        self._meter = meter

    async def serve(self, websocket: WebSocket) -> None:
        gate = self._gateway.gate
        request_id = websocket.headers.get("x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            gate.authorize(websocket.headers)
            check_model(websocket.query_params.get("model"))
            memory_id = normalize_session_id(websocket.query_params.get("session_id"))
            slot = gate.connect()
        except Exception as error:
            refused = logged_refusal(logger, "realtime session", error, request_id, started)
            self._count(refused.code)
            await self._deny(websocket, refused, request_id)
            return
        try:
            offered = websocket.scope.get("subprotocols") or []
            await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
            logger.info("realtime session opened", extra={"request_id": request_id, "route": REALTIME_ROUTE})
            reason = await self._converse(websocket, request_id, memory_id)
            self._count(None)
            logger.info(
                "realtime session closed: %s",
                reason,
                extra={
                    "request_id": request_id,
                    "duration_ms": round((time.perf_counter() - started) * 1e3, 1),
                },
            )
        finally:
            slot.release()

    async def _converse(self, websocket: WebSocket, request_id: str, memory_id: str | None) -> str:
        settings = self._gateway.settings  # one snapshot: the session keeps its bounds to its end
        lock = asyncio.Lock()

        async def send(message: dict[str, Any]) -> None:
            async with lock:
                if websocket.application_state != WebSocketState.CONNECTED:
                    raise SessionClosed
                try:
                    await websocket.send_text(json.dumps(message, ensure_ascii=False))
                except (WebSocketDisconnect, RuntimeError, OSError) as error:
                    raise SessionClosed from error

        session = RealtimeSession(
            self._gateway.core,
            send,
            session_id=new_id("sess"),
            limits=SessionLimits(
                max_audio_seconds=settings.max_audio_seconds,
                max_input_chars=settings.max_speech_input_chars,
                max_tokens=settings.max_chat_tokens,
                preemptive=settings.realtime_preemptive,
                preemptive_delay_ms=settings.realtime_preemptive_delay_ms,
            ),
            admit=self._gateway.gate.admit,
            voices=self._voices,
            meter=self._meter,
            usage=self._usage,
            memory_id=memory_id,
        )
        loop = asyncio.get_running_loop()
        ends_at = loop.time() + settings.realtime_max_session_seconds
        try:
            await session.start()
            while True:
                left = ends_at - loop.time()
                idle = settings.realtime_idle_timeout_seconds
                try:
                    async with asyncio.timeout(min(idle, left)):
                        message = await websocket.receive()
                except TimeoutError:
                    reason = "idle timeout" if idle < left else "session time limit"
                    await self._close(websocket, 1000, reason)
                    return reason
                if message["type"] == "websocket.disconnect":
                    return f"client closed ({message.get('code', 1000)})"
                data: str | bytes | None = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                if len(data) > settings.realtime_max_message_bytes:
                    too_big = OrchestratorError(
                        OrchestratorErrorCode.PAYLOAD_TOO_LARGE,
                        f"A message may be at most {settings.realtime_max_message_bytes} bytes; send audio "
                        "in smaller chunks.",
                        details={"max_message_bytes": settings.realtime_max_message_bytes},
                    )
                    with contextlib.suppress(SessionClosed):
                        await send(error_event(too_big))
                    await self._close(websocket, 1009, "message too big")
                    return "message too big"
                await session.handle(data)
        except SessionClosed:
            return "client gone"
        finally:
            await session.close()

    async def _voices(self, name: str) -> VoiceChoice:
        """Per sentence: the session's voice, or for a sentence it cannot read, that script's default voice.
        An unknown name is refused at once."""
        catalog = await self._gateway.catalog()
        catalog.check_voice(name)
        return catalog.voice_choice(name)

    async def _usage(self, question: ReplyRequest, completion: str) -> TokenUsage:
        return await self._gateway.core.call("llm", self._llm.usage(question, completion))

    def _count(self, code: OrchestratorErrorCode | None) -> None:
        tags = {"route": ROUTE_TAG, "outcome": outcome_of(code), "error_code": code.value if code else "none"}
        self._meter.record(OPENAI_REQUESTS, 1.0, tags)

    @staticmethod
    async def _close(websocket: WebSocket, code: int, reason: str) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(code, reason)

    @staticmethod
    async def _deny(websocket: WebSocket, error: OrchestratorError, request_id: str) -> None:
        """The refusal as an HTTP response with the JSON error (what a client sees instead of the upgrade);
        where the server cannot send one, as an error event and a close code."""
        response = error_response(error_body(error, request_id), {"X-Request-ID": request_id}, openai=True)
        if "websocket.http.response" in (websocket.scope.get("extensions") or {}):
            await websocket.send_denial_response(response)
            return
        await websocket.accept()
        with contextlib.suppress(Exception):
            await websocket.send_text(json.dumps(error_event(error)))
        code = 1013 if error.http_status in (429, 503) else 1008
        await RealtimeService._close(websocket, code, error.message[:120])
