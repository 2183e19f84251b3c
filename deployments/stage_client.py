"""The ingress's side of a stage deployment: a Serve handle seen as the pipeline's stage Protocols.

One adapter for every stage: it cancels abandoned calls on the replica too, turns a full queue into a 429,
refuses (503) a call no replica can serve instead of letting it wait for the stage timeout, and keeps the
evidence (latency, failures) that /status reports.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from voice_orchestrator.admission import live_value
from voice_orchestrator.errors import (
    STAGE_UNAVAILABLE,
    OrchestratorError,
    OrchestratorErrorCode,
    stage_unavailable,
)
from voice_orchestrator.protocol import (
    DecodedAudio,
    EngineInfo,
    ReplyRequest,
    SpeechAudio,
    SpeechTask,
    SynthesisRequest,
    TokenUsage,
    Transcription,
    Turn,
)
from voice_orchestrator.status import CallEvidence, DeploymentView

T = TypeVar("T")
logger = logging.getLogger("deployments.stage")
_CRASH_HINT = (
    " (the crashed replica's native and Python stacks, with the engine call that crashed, are in Ray's "
    "worker logs: grep -l 'Fatal Python error' /tmp/ray/session_latest/logs/worker-*.err)"
)

# Replica states in which a replica may be executing a call already sent (STOPPING: draining on redeploy).
SERVING_REPLICA_STATES = frozenset({"RUNNING", "UPDATING", "RECOVERING", "STOPPING", "PENDING_MIGRATION"})


class _NoServingReplica(Exception):
    """A call was sent, and then every replica that could serve it went away."""


class StageClient:
    """Implements SpeechToTextStage, LanguageModelStage and TextToSpeechStage over one stage's handle."""

    def __init__(
        self,
        handle: DeploymentHandle[Any],
        stage: str,
        retry_after: int | Callable[[], int],
        watch_interval_s: float = 1.0,
        look_again: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._handle = handle
        self._stage = stage
        self._retry_after = live_value(retry_after)  # read live: reconfigure() pushes nothing here
        self.evidence = CallEvidence()
        # Serve's latest view of the stage's deployment (kept fresh by the ingress): with no running replica a
        # handle call would wait for one until the stage timeout; refuse at once instead (503, Retry-After).
        self._deployment: DeploymentView | None = None
        self._start_failure_logged = False
        self._watch_interval_s = watch_interval_s
        # Fetches a fresh view (at most a few times a second, whoever asks): the watcher's may be up to a
        # second old, from before a replica finished starting — the first requests after a deploy.
        self._look_again = look_again

    @property
    def deployment(self) -> DeploymentView | None:
        return self._deployment

    @deployment.setter
    def deployment(self, view: DeploymentView | None) -> None:
        """A new view of the deployment; replicas that keep failing to start are logged once, at ERROR, with
        Serve's own account (a crashed replica's Python stack is in its worker log: Ray turns faulthandler
        on in its workers)."""
        self._deployment = view
        if view is None:
            return
        failure = view.start_failure()
        if failure is not None and not self._start_failure_logged:
            self._start_failure_logged = True  # Serve goes on retrying: once, until a replica has run again
            logger.error(
                "%s: every %s call is refused (503) until a replica starts. Serve says: %s%s",
                failure,
                self._stage.upper(),
                view.message[-2000:],
                _CRASH_HINT if "replica died" in failure else "",
                extra={"stage": self._stage, "error_code": STAGE_UNAVAILABLE[self._stage].value},
            )
        elif failure is None and view.replica_states.get("RUNNING", 0):
            self._start_failure_logged = False

    async def _check_available(self) -> None:
        """Before a call: a replica must be running to take it (by a fresh view, when the last said none)."""
        if self._lost({"RUNNING"}) and self._look_again is not None:
            await self._look_again()
        if self._lost({"RUNNING"}):
            raise self._unavailable()

    def _lost(self, serving_states: frozenset[str] | set[str]) -> bool:
        view = self.deployment
        if view is None or view.state is None:  # not seen yet: let the call try
            return False
        return not any(view.replica_states.get(state, 0) for state in serving_states)

    def _unavailable(self) -> OrchestratorError:
        view = self.deployment
        reason = view.unavailable_reason() if view is not None and view.state is not None else None
        return stage_unavailable(self._stage, self._retry_after(), reason)

    async def _while_served(self, pending: Awaitable[T]) -> T:
        """Await a call already sent, giving up (503) once no replica could be serving it: when its replica's
        node is lost, Serve keeps the call queued for a replacement that may take minutes to start."""
        task = asyncio.ensure_future(pending)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self._watch_interval_s)
                if done:
                    return task.result()
                if self._lost(SERVING_REPLICA_STATES):
                    raise _NoServingReplica
        finally:
            task.cancel()  # no-op when done; else the caller left, a timeout fired, or the replica is gone

    async def transcribe(
        self, audio: DecodedAudio, language: str | None, task: SpeechTask = "transcribe"
    ) -> Transcription:
        result: Transcription = await self._call("transcribe", audio, language, task)
        return result

    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        result: SpeechAudio = await self._call("synthesize", request)
        return result

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        await self._check_available()
        started = time.perf_counter()
        deltas: Any = self._handle.options(stream=True).stream.remote(request)
        finished = False
        try:
            while True:
                try:
                    delta = await self._while_served(deltas.__anext__())
                except StopAsyncIteration:
                    break
                yield delta
            finished = True
        except _NoServingReplica:
            raise self._unavailable() from None
        except Exception as error:
            raise self._failed(error) from None
        finally:
            if finished:
                self.evidence.success((time.perf_counter() - started) * 1000.0)
            else:  # the client left, a timeout fired, TTS failed or the model did: stop generating
                deltas.cancel()

    async def usage(self, request: ReplyRequest, completion: str) -> TokenUsage:
        result: TokenUsage = await self._call("usage", request, completion)
        return result

    async def info(self, wait_s: float) -> EngineInfo:
        response: Any = self._handle.info.remote()
        try:
            info: EngineInfo = await asyncio.wait_for(response, wait_s)
        except TimeoutError:
            response.cancel()
            raise
        return info

    async def _call(self, method: str, *args: Any) -> Any:
        await self._check_available()
        started = time.perf_counter()
        response: Any = getattr(self._handle, method).remote(*args)
        try:
            result = await self._while_served(response)
        except asyncio.CancelledError:  # the pipeline's timeout fired or the client left: free the replica
            response.cancel()
            raise
        except _NoServingReplica:
            response.cancel()
            raise self._unavailable() from None
        except Exception as error:
            raise self._failed(error) from None
        self.evidence.success((time.perf_counter() - started) * 1000.0)
        return result

    def _failed(self, error: Exception) -> Exception:
        """What the pipeline sees of a failed call; failures of the stage itself count against its health."""
        if isinstance(error, BackPressureError):  # busy, not broken
            return OrchestratorError(
                OrchestratorErrorCode.TOO_MANY_REQUESTS,
                f"The {self._stage.upper()} service's queue is full; retry shortly.",
                details={"stage": self._stage},
                retry_after=self._retry_after(),
            )
        if isinstance(error, OrchestratorError):  # the stage refused the request (e.g. an unknown voice)
            if error.http_status >= 500:
                self.evidence.failure(error.code.value)
            return OrchestratorError(
                error.code, error.message, details=error.details, retry_after=error.retry_after
            )
        self.evidence.failure(type(error).__name__)
        return error  # the pipeline maps it to this stage's 503


class ConversationsClient:
    """The shared session memory; a slow or missing store must not hold a dialogue up for long."""

    def __init__(self, handle: DeploymentHandle[Any], timeout: float | Callable[[], float]) -> None:
        self._handle = handle
        self._timeout = live_value(timeout)

    async def history(self, session_id: str) -> list[Turn]:
        turns: list[Turn] = await asyncio.wait_for(self._handle.history.remote(session_id), self._timeout())
        return turns

    async def remember(self, session_id: str, turn: Turn) -> None:
        await asyncio.wait_for(self._handle.remember.remote(session_id, turn), self._timeout())

    async def forget(self, session_id: str) -> bool:
        deleted: bool = await asyncio.wait_for(self._handle.forget.remote(session_id), self._timeout())
        return deleted
