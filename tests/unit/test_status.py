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


# Serve 2.60's deployment message after three replicas of a stage died at start (a crash in the constructor's
# warm-up), and after three whose constructor raised.
DIED = (
    "The deployment failed to start 3 times in a row. This may be due to a problem with its constructor or "
    "initial health check failing. See controller logs for details. Retrying after 2 seconds. Error:\n"
    "The actor died unexpectedly before finishing this task.\n"
    "\tclass_name: ServeReplica:voice:LanguageModel\n\tpid: 4242\n"
    "The actor is dead because its worker process has died. Worker exit type: SYSTEM_ERROR "
    "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of file."
)
RAISED = (
    "The deployment failed to start 4 times in a row. This may be due to a problem with its constructor or "
    "initial health check failing. See controller logs for details. Retrying after 8 seconds. Error:\n"
    "ray::ServeReplica:voice:LanguageModel.initialize_and_get_metadata() (pid=77)\n"
    '  File "/x/llama.py", line 3, in __init__\n    raise ValueError(...)\n'
    "ValueError: Failed to load model from file: /models/missing.gguf\n"
)


def test_replicas_that_keep_dying_at_start_are_named_with_their_count() -> None:
    view = DeploymentView("UNHEALTHY", {"STARTING": 1}, DIED, name="LanguageModel")
    assert view.start_failure() == "LanguageModel failed to start (replica died 3×)"
    assert view.unavailable_reason() == "no running replica: LanguageModel failed to start (replica died 3×)"
    status = assess_stage(StageObservation(deployment=view, info=INFO))
    assert status.status == "unhealthy"
    assert status.message == "no running replica (UNHEALTHY): LanguageModel failed to start (replica died 3×)"


def test_serve_260s_own_words_for_a_segfault_at_start() -> None:
    """The message Serve 2.60 gave when a stand-in's constructor killed itself with SIGSEGV (integration
    test: test_a_stage_crashing_at_start_is_named_in_status_refusals_and_the_log)."""
    message = DIED.split("Error:\n")[0] + "Error:\nActorDiedError()"
    view = DeploymentView("UNHEALTHY", {"STARTING": 1}, message, name="LanguageModel")
    assert view.start_failure() == "LanguageModel failed to start (replica died 3×)"


def test_a_constructor_that_raises_is_named_with_its_error() -> None:
    view = DeploymentView("UNHEALTHY", {}, RAISED, name="LanguageModel")
    assert view.start_failure() == (
        "LanguageModel failed to start (4×): ValueError: Failed to load model from file: /models/missing.gguf"
    )


def test_other_messages_are_not_start_failures() -> None:
    view = DeploymentView("UNHEALTHY", {"STARTING": 1}, "replica died\nmore", name="TextToSpeech")
    assert view.start_failure() is None
    assert view.unavailable_reason() == "no running replica: replica died"
    assert DeploymentView("UPDATING", {}).unavailable_reason() == "no replica is running"
