"""What every replica shares: JSON logs that carry the Serve request id, and per-call accounting."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ray import serve

from voice_orchestrator.errors import OrchestratorError
from voice_orchestrator.health import EngineHealth
from voice_orchestrator.logs import configure_logging
from voice_orchestrator.metrics import STAGE_LATENCY, Meter, language_tag
from voice_orchestrator.settings import OrchestratorSettings

logger = logging.getLogger("deployments.stage")
T = TypeVar("T")


def current_request_id() -> str | None:
    # Serve propagates the ingress's request id (the client's X-Request-ID) through every handle call.
    try:
        request_id: str = serve.context._get_serve_request_context().request_id
    except Exception:  # outside a request (start-up, health checks)
        return None
    return request_id or None


def setup_replica(settings: OrchestratorSettings) -> None:
    configure_logging(log_transcripts=settings.log_transcripts, request_id_provider=current_request_id)


async def served(
    stage: str,
    health: EngineHealth,
    work: Awaitable[T],
    *,
    meter: Meter,
    engine: str,
    language: Callable[[T], str | None],
) -> T:
    """Await one stage call: count it for health, record its latency, and log its outcome and duration
    under the request id. `language` reads the language tag off the result (STT only learns it then)."""
    started = time.perf_counter()
    try:
        result = await health.track(work)
    except OrchestratorError as error:  # the request's fault: no traceback, the ingress answers 4xx
        logger.warning("%s call refused: %s", stage, error.message, extra={"stage": stage})
        raise
    except Exception:
        logger.exception(
            "%s call failed",
            stage,
            extra={"stage": stage, "duration_ms": round((time.perf_counter() - started) * 1000.0, 1)},
        )
        raise
    duration_ms = (time.perf_counter() - started) * 1000.0
    meter.record(
        STAGE_LATENCY,
        duration_ms,
        {"stage": stage, "engine": engine, "language": language_tag(language(result))},
    )
    logger.info("%s call done", stage, extra={"stage": stage, "duration_ms": round(duration_ms, 1)})
    return result
