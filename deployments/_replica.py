"""What every replica does at start: JSON logs that carry the Serve request id."""

from __future__ import annotations

from ray import serve

from voice_orchestrator.logs import configure_logging
from voice_orchestrator.settings import OrchestratorSettings


def current_request_id() -> str | None:
    # Serve propagates the ingress's request id (the client's X-Request-ID) through every handle call.
    try:
        request_id: str = serve.context._get_serve_request_context().request_id
    except Exception:  # outside a request (start-up, health checks)
        return None
    return request_id or None


def setup_replica(settings: OrchestratorSettings) -> None:
    configure_logging(log_transcripts=settings.log_transcripts, request_id_provider=current_request_id)
