"""The routes: short functions that hand the request to the objects the ingress built (`IngressState`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from voice_orchestrator import __version__
from voice_orchestrator.api.docs import (
    DIALOGUE_DOCS,
    SESSION_DOCS,
    STATUS_DOCS,
    STREAM_DOCS,
    complete_document,
)
from voice_orchestrator.api.errors import install_error_handlers
from voice_orchestrator.api.gate import Gate
from voice_orchestrator.api.openai.router import OpenAIServices
from voice_orchestrator.api.openai.router import router as openai_router
from voice_orchestrator.api.serving import DialogueService
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import SessionDeleted, StatusResponse
from voice_orchestrator.stages import ConversationStage
from voice_orchestrator.status import StatusReporter, overall_health
from voice_orchestrator.turn import normalize_session_id

DIALOGUE_ROUTE = "/api/orchestrator/dialogue"
STREAM_ROUTE = "/api/orchestrator/dialogue/stream"
SESSION_ROUTE = "/api/orchestrator/sessions/{session_id}"
STATUS_ROUTE = "/api/orchestrator/status"
PAGE = resources.files("voice_orchestrator") / "web" / "index.html"


@dataclass
class IngressState:
    """What the routes use, built by the ingress deployment (or a test) and kept in `app.state.ingress`."""

    gate: Gate
    dialogues: DialogueService
    status: StatusReporter
    conversations: ConversationStage | None
    page: str = PAGE.read_text(encoding="utf-8") if PAGE.is_file() else "<h1>voice-orchestrator</h1>"
    # The OpenAI-compatible routes' services (`/v1/...`); None: those routes answer 503.
    openai: OpenAIServices | None = None


router = APIRouter()


def _state(request: Request) -> IngressState:
    state: IngressState = request.app.state.ingress
    return state


@router.get("/", include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    """The browser client: push-to-talk and hands-free conversation (its API key, if any, is typed in)."""
    return HTMLResponse(_state(request).page)


@router.get(STATUS_ROUTE, **STATUS_DOCS)
async def status(request: Request) -> JSONResponse:
    state = _state(request)
    state.gate.authorize(request.headers)
    settings = state.gate.settings
    services = await state.status.services(
        settings.status_cache_seconds, settings.status_failure_window_seconds
    )
    report = StatusResponse(
        status=overall_health(services.values()),
        services=services,
        active_dialogues=state.gate.dialogues.active,
        max_concurrent_dialogues=state.gate.dialogues.limit,
        version=__version__,
        timestamp=datetime.now(UTC),
    )
    return JSONResponse(
        report.model_dump(mode="json"), status_code=503 if report.status == "unhealthy" else 200
    )


@router.post(DIALOGUE_ROUTE, **DIALOGUE_DOCS)
async def dialogue(request: Request) -> Response:
    return await _state(request).dialogues.dialogue(request)


@router.post(STREAM_ROUTE, **STREAM_DOCS)
async def dialogue_stream(request: Request) -> Response:
    return await _state(request).dialogues.dialogue_stream(request)


@router.delete(SESSION_ROUTE, **SESSION_DOCS)
async def forget_session(session_id: str, request: Request) -> SessionDeleted:
    state = _state(request)
    state.gate.authorize(request.headers)
    checked = normalize_session_id(session_id)
    if checked is None:
        raise OrchestratorError(OrchestratorErrorCode.INVALID_REQUEST, "session_id is empty.")
    deleted = await state.conversations.forget(checked) if state.conversations else False
    return SessionDeleted(session_id=checked, deleted=deleted)


def create_app() -> FastAPI:
    app = FastAPI(
        title="Voice dialogue orchestrator",
        version=__version__,
        description="Speech in, speech out: speech-to-text -> language model -> text-to-speech on Ray Serve.",
    )
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(openai_router)
    complete_document(app)
    return app
