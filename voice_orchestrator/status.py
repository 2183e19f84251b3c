"""GET /api/orchestrator/status: the health of every stage, from facts the ingress gathers (no Ray import).

Liveness is not latency: a stage busy serving is healthy. Per stage the facts are Serve's view of the
deployment (its state, its replicas by state: Serve restarts a replica whose `check_health()` — a real engine
probe — fails) and the ingress's own evidence of its calls to the stage (the last failure and success, recent
latencies). Nothing is pinged: a ping would queue behind real work and call a busy stage slow or dead.
  unhealthy = no running replica, or the deployment is missing;
  degraded  = it can serve but is impaired: fewer replicas running than wanted, an update or restart under
              way, or its latest calls failed (no success since, within `status_failure_window_seconds`);
  healthy   = everything else; `latency_ms` is the median of its recent calls as the ingress saw them.
The service is as healthy as its least healthy stage.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from voice_orchestrator.protocol import EngineInfo, HealthState, ReplicaCounts, ServiceStatus

# Replica states that count towards the replicas Serve is trying to have (STOPPING ones are on their way out).
WANTED_REPLICA_STATES = frozenset({"STARTING", "UPDATING", "RECOVERING", "RUNNING", "PENDING_MIGRATION"})


class CallEvidence:
    """What the ingress saw of one stage's calls: recent latencies, the last success and the last failure."""

    def __init__(self, window: int = 32, clock: Callable[[], float] = time.monotonic) -> None:
        self._latencies: deque[float] = deque(maxlen=window)
        self._clock = clock
        self._last_ok: float | None = None
        self._last_failure: tuple[float, str] | None = None

    def success(self, latency_ms: float) -> None:
        self._latencies.append(latency_ms)
        self._last_ok = self._clock()

    def failure(self, reason: str) -> None:
        self._last_failure = (self._clock(), reason)

    def failing(self, within_s: float) -> str | None:
        """Why the latest calls failed, when no call succeeded since a failure in the last `within_s`."""
        if self._last_failure is None:
            return None
        when, reason = self._last_failure
        recovered = self._last_ok is not None and self._last_ok > when
        return None if recovered or self._clock() - when > within_s else reason

    @property
    def latency_ms(self) -> float | None:
        return round(statistics.median(self._latencies), 1) if self._latencies else None


@dataclass(frozen=True)
class DeploymentView:
    """Serve's view of one deployment; `state` None when the deployment is not in serve.status()."""

    state: str | None
    replica_states: Mapping[str, int] = field(default_factory=dict)
    message: str = ""
    name: str = ""  # the deployment's name (LanguageModel, ...)

    def start_failure(self) -> str | None:
        """ "LanguageModel failed to start (replica died 3×)" when Serve says its replicas keep failing to
        start, with the error's last line where the constructor raised; None otherwise."""
        found = _FAILED_TO_START.search(self.message)
        if found is None:
            return None
        error = self.message[found.end() :]
        name = self.name or "the deployment"
        if _DIED.search(error):  # a crash (SIGSEGV, SIGILL, OOM kill): the process is gone, no traceback
            return f"{name} failed to start (replica died {found.group(1)}×)"
        last = next((line.strip() for line in reversed(error.splitlines()) if line.strip()), "")
        return f"{name} failed to start ({found.group(1)}×): {last[:300]}"

    def unavailable_reason(self) -> str:
        """Why no replica can serve, in one line."""
        detail = self.start_failure() or self.message.strip().split("\n")[0][:300]
        return f"no running replica: {detail}" if detail else "no replica is running"


# Serve 2.60 (deployment_state.py): "The deployment failed to start 3 times in a row. ... Error:\n<error>".
_FAILED_TO_START = re.compile(r"failed to start (\d+) times in a row")
_DIED = re.compile(r"ActorDiedError|actor died|process has died|SIGSEGV|SIGILL|SIGKILL", re.IGNORECASE)


@dataclass(frozen=True)
class StageObservation:
    deployment: DeploymentView
    info: EngineInfo | None = None  # the last info the stage reported, kept while it is down
    latency_ms: float | None = None
    failing: str | None = None


def assess_stage(observation: StageObservation) -> ServiceStatus:
    view = observation.deployment
    running = view.replica_states.get("RUNNING", 0)
    target = sum(count for state, count in view.replica_states.items() if state in WANTED_REPLICA_STATES)
    replicas = ReplicaCounts(running=running, target=max(target, running))
    info = observation.info or EngineInfo(engine="unknown", model="unknown")

    def status(state: HealthState, message: str | None) -> ServiceStatus:
        return ServiceStatus(
            status=state,
            engine=info.engine,
            model=info.model,
            latency_ms=observation.latency_ms,
            replicas=replicas,
            message=message,
        )

    if view.state is None:
        return status("unhealthy", "deployment not found")
    if running == 0:
        detail = view.start_failure() or view.message or observation.failing or "no replica is running"
        return status("unhealthy", f"no running replica ({view.state}): {detail}")
    problems: list[str] = []
    if view.state != "HEALTHY":
        problems.append(f"deployment {view.state.lower()}")
    if running < replicas.target:
        problems.append(f"{running} of {replicas.target} replicas running")
    if observation.failing is not None:
        problems.append(f"recent calls failed: {observation.failing}")
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


class StatusReporter:
    """Builds the per-stage statuses; concurrent callers share one refresh, reused for `cache_s`."""

    def __init__(
        self,
        evidence: Mapping[str, CallEvidence],
        deployments: Callable[[], Awaitable[Mapping[str, DeploymentView]]],
        engine_info: Callable[[str], Awaitable[EngineInfo]],
    ) -> None:
        self._evidence = evidence
        self._deployments = deployments
        self._engine_info = engine_info
        self._lock = asyncio.Lock()
        self._cached: tuple[float, dict[str, ServiceStatus]] | None = None
        self._known_info: dict[str, EngineInfo] = {}

    async def services(self, cache_s: float, failure_window_s: float) -> dict[str, ServiceStatus]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < cache_s:
                return self._cached[1]
            views = await self._deployments()
            await self._learn_engines()
            services = {
                stage: assess_stage(
                    StageObservation(
                        deployment=views.get(stage, DeploymentView(state=None)),
                        info=self._known_info.get(stage),
                        latency_ms=evidence.latency_ms,
                        failing=evidence.failing(failure_window_s),
                    )
                )
                for stage, evidence in self._evidence.items()
            }
            self._cached = (time.monotonic(), services)
            return services

    async def _learn_engines(self) -> None:
        # What engine and model a stage runs does not change while it lives: asked until known, then kept.
        unknown = [stage for stage in self._evidence if stage not in self._known_info]
        answers = await asyncio.gather(
            *(self._engine_info(stage) for stage in unknown), return_exceptions=True
        )
        for stage, answer in zip(unknown, answers, strict=True):
            if isinstance(answer, EngineInfo):
                self._known_info[stage] = answer
