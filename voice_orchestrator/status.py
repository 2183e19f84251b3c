"""Health aggregation for GET /api/orchestrator/status, from facts the ingress gathers (no Ray import).

Per stage: Serve's view of the deployment (state, replicas by state) plus a live ping through its handle.
  unhealthy = no running replica, or the deployment is missing;
  degraded  = it can serve but is impaired: fewer replicas running than wanted, an update or restart under
              way, a ping that failed or was slow;
  healthy   = everything else.
The service is as healthy as its least healthy stage.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from voice_orchestrator.protocol import EngineInfo, HealthState, ReplicaCounts, ServiceStatus

# Replica states that count towards the replicas Serve is trying to have (STOPPING ones are on their way out).
WANTED_REPLICA_STATES = frozenset({"STARTING", "UPDATING", "RECOVERING", "RUNNING", "PENDING_MIGRATION"})


@dataclass(frozen=True)
class StageObservation:
    deployment_state: (
        str | None
    )  # Serve's DeploymentStatus; None when the deployment is not in serve.status()
    replica_states: Mapping[str, int] = field(default_factory=dict)
    deployment_message: str = ""
    ping_ms: float | None = None
    ping_error: str | None = None
    info: EngineInfo | None = None  # the last info the stage reported, kept while it is down


def assess_stage(observation: StageObservation, slow_ping_ms: float) -> ServiceStatus:
    running = observation.replica_states.get("RUNNING", 0)
    target = sum(
        count for state, count in observation.replica_states.items() if state in WANTED_REPLICA_STATES
    )
    replicas = ReplicaCounts(running=running, target=max(target, running))
    info = observation.info or EngineInfo(engine="unknown", model="unknown")

    def status(state: HealthState, message: str | None) -> ServiceStatus:
        return ServiceStatus(
            status=state,
            engine=info.engine,
            model=info.model,
            latency_ms=observation.ping_ms,
            replicas=replicas,
            message=message,
        )

    if observation.deployment_state is None:
        return status("unhealthy", "deployment not found")
    if running == 0:
        detail = observation.deployment_message or observation.ping_error or "no replica is running"
        return status("unhealthy", f"no running replica ({observation.deployment_state}): {detail}")
    problems: list[str] = []
    if observation.deployment_state != "HEALTHY":
        problems.append(f"deployment {observation.deployment_state.lower()}")
    if running < replicas.target:
        problems.append(f"{running} of {replicas.target} replicas running")
    if observation.ping_error is not None:
        problems.append(f"ping failed: {observation.ping_error}")
    elif observation.ping_ms is not None and observation.ping_ms > slow_ping_ms:
        problems.append(f"slow ping ({observation.ping_ms:.0f} ms)")
    if problems:
        return status("degraded", "; ".join(problems))
    return status("healthy", None)


def overall_health(services: Iterable[ServiceStatus]) -> HealthState:
    states = {service.status for service in services}
    if "unhealthy" in states:
        return "unhealthy"
    if "degraded" in states:
        return "degraded"
    return "healthy"
