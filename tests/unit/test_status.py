"""Status: Serve's view of each stage plus the ingress's evidence of its calls. Busy is healthy."""

from __future__ import annotations

from voice_orchestrator.protocol import EngineInfo
from voice_orchestrator.status import (
    CallEvidence,
    DeploymentView,
    StageObservation,
    StatusReporter,
    assess_stage,
    overall_health,
)

INFO = EngineInfo(engine="faster-whisper", model="whisper-base")


def _assess(
    state: str | None = "HEALTHY",
    replicas: dict[str, int] | None = None,
    message: str = "",
    **observed: object,
) -> tuple[str, str | None, int, int]:
    view = DeploymentView(state=state, replica_states=replicas or {}, message=message)
    status = assess_stage(StageObservation(deployment=view, info=INFO, **observed))  # type: ignore[arg-type]
    return status.status, status.message, status.replicas.running, status.replicas.target


def test_all_running_is_healthy_however_slow_the_calls() -> None:
    # A stage busy serving long requests is alive: its latency is reported, never held against it.
    assert _assess(replicas={"RUNNING": 2}, latency_ms=12.0) == ("healthy", None, 2, 2)
    assert _assess(replicas={"RUNNING": 1}, latency_ms=25_000.0) == ("healthy", None, 1, 1)


def test_a_missing_replica_degrades() -> None:
    state, message, running, target = _assess("UPDATING", {"RUNNING": 1, "STARTING": 1})
    assert (state, running, target) == ("degraded", 1, 2)
    assert message == "deployment updating; 1 of 2 replicas running"


def test_recent_failed_calls_degrade() -> None:
    state, message, *_ = _assess(replicas={"RUNNING": 1}, failing="RayActorError")
    assert (state, message) == ("degraded", "recent calls failed: RayActorError")


def test_no_running_replica_is_unhealthy() -> None:
    state, message, running, target = _assess(
        "UNHEALTHY", {"STARTING": 1}, message="replica died", failing="ActorDiedError"
    )
    assert (state, running, target) == ("unhealthy", 0, 1)
    assert message == "no running replica (UNHEALTHY): replica died"


def test_missing_deployment_is_unhealthy_and_keeps_the_last_known_engine() -> None:
    status = assess_stage(StageObservation(deployment=DeploymentView(state=None), info=INFO))
    assert status.status == "unhealthy"
    assert (status.engine, status.model) == ("faster-whisper", "whisper-base")


def test_overall_is_the_worst_stage() -> None:
    running = DeploymentView("HEALTHY", {"RUNNING": 1})
    healthy = assess_stage(StageObservation(running, latency_ms=1.0))
    degraded = assess_stage(StageObservation(running, failing="TimeoutError"))
    unhealthy = assess_stage(StageObservation(DeploymentView("HEALTHY", {})))
    assert overall_health([healthy, healthy]) == "healthy"
    assert overall_health([healthy, degraded]) == "degraded"
    assert overall_health([degraded, unhealthy, healthy]) == "unhealthy"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_call_evidence_forgets_a_failure_after_a_success_or_the_window() -> None:
    clock = Clock()
    evidence = CallEvidence(window=3, clock=clock)
    assert (evidence.failing(30.0), evidence.latency_ms) == (None, None)
    for latency in (100.0, 900.0, 200.0, 300.0):  # the window keeps the last three
        evidence.success(latency)
    assert evidence.latency_ms == 300.0
    evidence.failure("RayActorError")
    assert evidence.failing(30.0) == "RayActorError"
    clock.now += 31.0
    assert evidence.failing(30.0) is None  # too old to tell about now
    evidence.failure("TimeoutError")
    clock.now += 1.0
    evidence.success(50.0)
    assert evidence.failing(30.0) is None  # the stage answered since


async def test_reporter_shares_refreshes_and_asks_each_engine_until_it_knows() -> None:
    asked: list[str] = []
    views = {"stt": DeploymentView("HEALTHY", {"RUNNING": 1})}

    async def deployments() -> dict[str, DeploymentView]:
        return views

    async def engine_info(stage: str) -> EngineInfo:
        asked.append(stage)
        if len(asked) == 1:
            raise TimeoutError  # the first ask timed out: ask again next time
        return INFO

    reporter = StatusReporter({"stt": CallEvidence(), "tts": CallEvidence()}, deployments, engine_info)
    first = await reporter.services(cache_s=0.0, failure_window_s=30.0)
    assert first["stt"].engine == "unknown"
    assert first["tts"].status == "unhealthy"
    second = await reporter.services(cache_s=0.0, failure_window_s=30.0)
    assert second["stt"].engine == "faster-whisper"
    assert second["stt"].status == "healthy"
    await reporter.services(cache_s=60.0, failure_window_s=30.0)  # cached: nothing asked
    await reporter.services(cache_s=0.0, failure_window_s=30.0)  # both known: nothing asked
    assert asked == ["stt", "tts", "stt"]
