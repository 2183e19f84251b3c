from __future__ import annotations

import pytest

from voice_orchestrator.protocol import EngineInfo
from voice_orchestrator.status import StageObservation, assess_stage, overall_health

INFO = EngineInfo(engine="faster-whisper", model="whisper-base")


def _assess(**observed: object) -> tuple[str, str | None, int, int]:
    observation = StageObservation(**{"deployment_state": "HEALTHY", "info": INFO, **observed})  # type: ignore[arg-type]
    status = assess_stage(observation, slow_ping_ms=1000.0)
    return status.status, status.message, status.replicas.running, status.replicas.target


def test_all_running_and_quick_is_healthy() -> None:
    assert _assess(replica_states={"RUNNING": 2}, ping_ms=12.0) == ("healthy", None, 2, 2)


def test_a_missing_replica_degrades() -> None:
    state, message, running, target = _assess(
        deployment_state="UPDATING", replica_states={"RUNNING": 1, "STARTING": 1}, ping_ms=5.0
    )
    assert (state, running, target) == ("degraded", 1, 2)
    assert message == "deployment updating; 1 of 2 replicas running"


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        ({"ping_ms": 2500.0}, "slow ping (2500 ms)"),
        ({"ping_error": "TimeoutError"}, "ping failed: TimeoutError"),
    ],
)
def test_slow_or_failed_ping_degrades(observed: dict[str, object], expected: str) -> None:
    state, message, *_ = _assess(replica_states={"RUNNING": 1}, **observed)
    assert (state, message) == ("degraded", expected)


def test_no_running_replica_is_unhealthy() -> None:
    state, message, running, target = _assess(
        deployment_state="UNHEALTHY",
        replica_states={"STARTING": 1},
        deployment_message="replica died",
        ping_error="ActorDiedError",
    )
    assert (state, running, target) == ("unhealthy", 0, 1)
    assert message == "no running replica (UNHEALTHY): replica died"


def test_missing_deployment_is_unhealthy_and_keeps_the_last_known_engine() -> None:
    status = assess_stage(StageObservation(deployment_state=None, info=INFO), slow_ping_ms=1000.0)
    assert status.status == "unhealthy"
    assert (status.engine, status.model) == ("faster-whisper", "whisper-base")


def test_overall_is_the_worst_stage() -> None:
    healthy = assess_stage(StageObservation("HEALTHY", {"RUNNING": 1}, ping_ms=1.0), 1000.0)
    degraded = assess_stage(StageObservation("HEALTHY", {"RUNNING": 1}, ping_ms=5000.0), 1000.0)
    unhealthy = assess_stage(StageObservation("HEALTHY", {}), 1000.0)
    assert overall_health([healthy, healthy]) == "healthy"
    assert overall_health([healthy, degraded]) == "degraded"
    assert overall_health([degraded, unhealthy, healthy]) == "unhealthy"
