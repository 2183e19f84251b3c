"""What every replica shares: JSON logs that carry the Serve request id, per-call accounting, and the live
settings of the model stages."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from ray import serve

from voice_orchestrator.errors import OrchestratorError
from voice_orchestrator.health import EngineHealth
from voice_orchestrator.logs import configure_logging
from voice_orchestrator.metrics import STAGE_LATENCY, Meter, language_tag
from voice_orchestrator.settings import StageSettings, apply_live

logger = logging.getLogger("deployments.stage")
T = TypeVar("T")
LiveT = TypeVar("LiveT", bound=StageSettings)


def current_request_id() -> str | None:
    # Serve propagates the ingress's request id (the client's X-Request-ID) through every handle call.
    try:
        request_id: str = serve.context._get_serve_request_context().request_id
    except Exception:  # outside a request (start-up, health checks)
        return None
    return request_id or None


def setup_replica(log_transcripts: bool = False) -> None:
    configure_logging(log_transcripts=log_transcripts, request_id_provider=current_request_id)


# The model stages' defaults (the profiles restate them): a 2 s health-check period, so Serve notices a dead
# replica within seconds and /status does too (the check is an RPC; the engine probe only runs when no request
# proved the engine lately).
MODEL_STAGE_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.5},
    "max_ongoing_requests": 4,
    "health_check_period_s": 2,
    "health_check_timeout_s": 60,
}


class ModelStage(Generic[LiveT]):
    """The part of the STT, LLM and TTS deployments that is not their model: the engine's health (probed
    when no request proved it lately), and live settings applied by `reconfigure` without a restart."""

    live_settings: type[LiveT]
    live: LiveT

    def _start(self, probe: Callable[[], Awaitable[None]]) -> None:
        setup_replica()
        self.live = self.live_settings()
        self._configured = False
        self._health = EngineHealth(probe, self.live.health_probe_interval_seconds)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """The deployment's user_config (see `apply_live`: refused whole when invalid)."""
        self.live = apply_live(
            self.live_settings, config, self.live if self._configured else None, self._check
        )
        self._configured = True
        self._health.interval_s = self.live.health_probe_interval_seconds

    def _check(self, live: LiveT) -> None:
        """Refuse live settings the engine cannot honour (raise ValueError with the reason)."""

    async def check_health(self) -> None:
        await self._health.check()


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
    except Exception as error:
        _failed(stage, error, started)
        raise
    _done(
        stage, started, meter, {"stage": stage, "engine": engine, "language": language_tag(language(result))}
    )
    return result


async def served_stream(
    stage: str, health: EngineHealth, deltas: AsyncIterator[str], *, meter: Meter, engine: str, language: str
) -> AsyncIterator[str]:
    """`served` for a streamed call: the accounting happens when the stream ends. A caller that leaves early
    (a client gone, a timeout) is neither a success nor a failure of the engine."""
    started = time.perf_counter()
    try:
        async for delta in deltas:
            yield delta
    except OrchestratorError as error:
        _failed(stage, error, started)
        if error.http_status >= 500:
            health.record_failure(error)
        raise
    except Exception as error:
        _failed(stage, error, started)
        health.record_failure(error)
        raise
    health.record_success()
    _done(stage, started, meter, {"stage": stage, "engine": engine, "language": language_tag(language)})


def _done(stage: str, started: float, meter: Meter, tags: dict[str, str]) -> None:
    duration_ms = (time.perf_counter() - started) * 1000.0
    meter.record(STAGE_LATENCY, duration_ms, tags)
    logger.info("%s call done", stage, extra={"stage": stage, "duration_ms": round(duration_ms, 1)})


def _failed(stage: str, error: Exception, started: float) -> None:
    if isinstance(error, OrchestratorError):  # the request's fault: no traceback, the ingress answers 4xx
        logger.warning("%s call refused: %s", stage, error.message, extra={"stage": stage})
        return
    logger.error(
        "%s call failed",
        stage,
        exc_info=error,
        extra={"stage": stage, "duration_ms": round((time.perf_counter() - started) * 1000.0, 1)},
    )
