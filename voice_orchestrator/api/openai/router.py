"""The `/v1` routes: short functions that hand the request to the OpenAI services the ingress built."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import JSONResponse, Response

from voice_orchestrator.api.gate import Gate
from voice_orchestrator.api.openai.catalog import OPENAI_VOICES, ModelCatalog
from voice_orchestrator.api.openai.chat import ChatService
from voice_orchestrator.api.openai.chat_audio import ChatVoice
from voice_orchestrator.api.openai.docs import (
    CHAT_DOCS,
    MODEL_DOCS,
    MODELS_DOCS,
    SPEECH_DOCS,
    TRANSCRIPTION_DOCS,
    TRANSLATION_DOCS,
    VOICES_DOCS,
)
from voice_orchestrator.api.openai.gateway import OpenAIGateway, Visit
from voice_orchestrator.api.openai.protocol import ModelList, VoiceList
from voice_orchestrator.api.openai.realtime import RealtimeService
from voice_orchestrator.api.openai.speech import SpeechService
from voice_orchestrator.api.openai.transcription import TranscriptionService
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.metrics import Meter
from voice_orchestrator.protocol import EngineInfo
from voice_orchestrator.stages import ChatModelStage
from voice_orchestrator.turn import TurnCore


@dataclass
class OpenAIServices:
    """What the /v1 routes use, kept in `IngressState.openai`."""

    gateway: OpenAIGateway
    speech: SpeechService
    transcription: TranscriptionService
    chat: ChatService
    realtime: RealtimeService

    @classmethod
    def build(
        cls,
        gate: Gate,
        core: TurnCore,
        meter: Meter,
        engine_info: Callable[[str], Awaitable[EngineInfo]],
        llm: ChatModelStage,
    ) -> OpenAIServices:
        """On the dialogue routes' gate and turn core: the same API key, admission, settings and meter."""
        gateway = OpenAIGateway(gate, core, meter, ModelCatalog(engine_info, int(time.time())))
        chat = ChatService(gateway, llm, ChatVoice(gateway))
        realtime = RealtimeService(gateway, llm, meter)
        return cls(gateway, SpeechService(gateway), TranscriptionService(gateway), chat, realtime)


router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


def _services(request: Request) -> OpenAIServices:
    services: OpenAIServices | None = request.app.state.ingress.openai
    if services is None:
        raise OrchestratorError(
            OrchestratorErrorCode.SERVICE_UNAVAILABLE, "The OpenAI-compatible routes are not set up here."
        )
    return services


@router.get("/models", **MODELS_DOCS)
async def list_models(request: Request) -> Response:
    gateway = _services(request).gateway

    async def answer(_: Visit) -> Response:
        listed = ModelList(data=(await gateway.catalog()).cards())
        return JSONResponse(listed.model_dump(mode="json"))

    return await gateway.handle(request, "models", answer)


@router.get("/models/{model:path}", **MODEL_DOCS)
async def retrieve_model(model: str, request: Request) -> Response:
    gateway = _services(request).gateway

    async def answer(_: Visit) -> Response:
        return JSONResponse((await gateway.catalog()).find(model).model_dump(mode="json"))

    return await gateway.handle(request, "models", answer)


@router.get("/audio/voices", **VOICES_DOCS)
async def list_voices(request: Request) -> Response:
    gateway = _services(request).gateway

    async def answer(_: Visit) -> Response:
        catalog = await gateway.catalog()
        listed = VoiceList(data=catalog.voice_cards(), openai_voice_names=list(OPENAI_VOICES))
        return JSONResponse(listed.model_dump(mode="json"))

    return await gateway.handle(request, "voices", answer)


@router.post("/audio/speech", **SPEECH_DOCS)
async def create_speech(request: Request) -> Response:
    services = _services(request)
    return await services.gateway.handle(
        request, "speech", lambda visit: services.speech.speak(request, visit)
    )


@router.post("/audio/transcriptions", **TRANSCRIPTION_DOCS)
async def create_transcription(request: Request) -> Response:
    services = _services(request)
    return await services.gateway.handle(
        request, "transcriptions", lambda visit: services.transcription.transcribe(request, visit)
    )


@router.post("/audio/translations", **TRANSLATION_DOCS)
async def create_translation(request: Request) -> Response:
    services = _services(request)
    return await services.gateway.handle(
        request, "translations", lambda visit: services.transcription.translate(request, visit)
    )


@router.post("/chat/completions", **CHAT_DOCS)
async def create_chat_completion(request: Request) -> Response:
    services = _services(request)
    return await services.gateway.handle(
        request, "chat", lambda visit: services.chat.complete(request, visit)
    )


@router.websocket("/realtime")
async def realtime_session(websocket: WebSocket) -> None:
    """The realtime socket (OpenAI Realtime protocol; README, "The realtime socket")."""
    services: OpenAIServices | None = websocket.app.state.ingress.openai
    if services is None:
        await websocket.close(1013, "The OpenAI-compatible routes are not set up here.")
        return
    await services.realtime.serve(websocket)
