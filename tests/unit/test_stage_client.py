"""The ingress's stage adapter over a stand-in handle: a call no replica can serve any more is refused
(503) within a watch interval and cancelled in Serve; a call a replica still serves is waited for."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

import numpy as np
import pytest

from deployments.stage_client import StageClient
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import DecodedAudio, ReplyRequest
from voice_orchestrator.status import DeploymentView

WATCH_S = 0.01
AUDIO = DecodedAudio(
    samples=np.zeros(1600, dtype=np.float32),
    source_format="wav",
    source_sample_rate=16_000,
    source_channels=1,
)


class PendingResponse:
    """A DeploymentResponse that answers once `answer` is set (never, unless a test sets it)."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.cancelled = False

    def __await__(self) -> Generator[Any, None, str]:
        yield from self.answer.wait().__await__()
        return "answered"

    def cancel(self) -> None:
        self.cancelled = True


class PendingDeltas:
    """A streaming DeploymentResponseGenerator that yields one delta, then waits forever."""

    def __init__(self) -> None:
        self.sent = 0
        self.cancelled = False

    def __aiter__(self) -> PendingDeltas:
        return self

    async def __anext__(self) -> str:
        self.sent += 1
        if self.sent == 1:
            return "Hello"
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    def cancel(self) -> None:
        self.cancelled = True


class Method:
    def __init__(self, response: Any) -> None:
        self.response = response

    def remote(self, *args: Any) -> Any:
        return self.response


class Handle:
    def __init__(self, response: Any) -> None:
        self.transcribe = Method(response)
        self.stream = Method(response)

    def options(self, **_: Any) -> Handle:
        return self


def _client(response: Any, **replicas: int) -> StageClient:
    client = StageClient(Handle(response), "stt", retry_after=3, watch_interval_s=WATCH_S)  # type: ignore[arg-type]
    client.deployment = DeploymentView("HEALTHY", replicas)
    return client


def _lose_replicas(client: StageClient, after_s: float, **replicas: int) -> None:
    asyncio.get_running_loop().call_later(
        after_s, lambda: setattr(client, "deployment", DeploymentView("UNHEALTHY", replicas))
    )


async def test_a_call_whose_replica_is_lost_is_refused_and_cancelled() -> None:
    response = PendingResponse()
    client = _client(response, RUNNING=1)
    _lose_replicas(client, 0.05, STARTING=1)  # the node is gone; the replacement waits for one
    with pytest.raises(OrchestratorError) as refused:
        await asyncio.wait_for(client.transcribe(AUDIO, "ja"), timeout=5)
    assert refused.value.code is OrchestratorErrorCode.STT_SERVICE_UNAVAILABLE
    assert refused.value.retry_after == 3
    assert response.cancelled


async def test_a_call_a_stopping_replica_still_serves_is_waited_for() -> None:
    response = PendingResponse()
    client = _client(response, RUNNING=1)
    _lose_replicas(client, 0.02, STOPPING=1, STARTING=1)  # a redeploy drains the old replica
    asyncio.get_running_loop().call_later(0.1, response.answer.set)
    answer: object = await asyncio.wait_for(client.transcribe(AUDIO, None), timeout=5)
    assert answer == "answered"
    assert not response.cancelled


async def test_a_stream_whose_replica_is_lost_ends_with_the_stage_error() -> None:
    deltas = PendingDeltas()
    client = _client(deltas, RUNNING=1)
    _lose_replicas(client, 0.05)
    received: list[str] = []

    async def listen() -> None:
        async for delta in client.stream(ReplyRequest(text="hi", language="en")):
            received.append(delta)

    with pytest.raises(OrchestratorError) as refused:
        await asyncio.wait_for(listen(), timeout=5)
    assert received == ["Hello"]
    assert refused.value.code is OrchestratorErrorCode.STT_SERVICE_UNAVAILABLE
    assert deltas.cancelled


async def test_a_new_call_with_no_running_replica_is_refused_at_once() -> None:
    response = PendingResponse()
    client = _client(response, STARTING=1)
    with pytest.raises(OrchestratorError):
        await client.transcribe(AUDIO, None)


async def test_a_view_that_says_no_replica_is_looked_at_again_before_refusing() -> None:
    """The watcher's view may predate a replica that has just started (the first requests after a
    deploy): the client asks for a fresh one before refusing, and refuses only if it says so too."""
    response = PendingResponse()
    looks: list[int] = []
    starting = DeploymentView("UPDATING", {"STARTING": 1})

    async def started() -> None:
        looks.append(1)
        client.deployment = DeploymentView("HEALTHY", {"RUNNING": 1})

    client = StageClient(Handle(response), "stt", 3, WATCH_S, started)  # type: ignore[arg-type]
    client.deployment = starting
    asyncio.get_running_loop().call_later(0.05, response.answer.set)
    answer: object = await asyncio.wait_for(client.transcribe(AUDIO, None), timeout=5)
    assert answer == "answered"
    assert looks == [1]
    await client.transcribe(AUDIO, None)  # running: no second look
    assert looks == [1]

    async def still_starting() -> None:
        looks.append(2)

    client = StageClient(Handle(response), "stt", 3, WATCH_S, still_starting)  # type: ignore[arg-type]
    client.deployment = starting
    with pytest.raises(OrchestratorError):
        await client.transcribe(AUDIO, None)
    assert looks == [1, 2]


def test_replicas_dying_at_start_are_the_refusals_reason_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    message = (
        "The deployment failed to start 3 times in a row. ... Error:\nThe actor died unexpectedly before "
        "finishing this task."
    )
    client = _client(PendingResponse(), RUNNING=1)
    with caplog.at_level("ERROR", logger="deployments.stage"):
        for count in (3, 4, 5):  # Serve goes on retrying, its count growing
            client.deployment = DeploymentView(
                "UNHEALTHY", {"STARTING": 1}, message.replace("3", str(count)), name="SpeechToText"
            )
        with pytest.raises(OrchestratorError) as refused:
            asyncio.run(client.transcribe(AUDIO, None))
        assert refused.value.details == {
            "stage": "stt",
            "reason": "no running replica: SpeechToText failed to start (replica died 5×)",
        }
        client.deployment = DeploymentView("HEALTHY", {"RUNNING": 1}, name="SpeechToText")
        client.deployment = DeploymentView("UNHEALTHY", {}, message, name="SpeechToText")
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 2  # once per episode, not once per retry
    assert logged[0].startswith("SpeechToText failed to start (replica died 3×): every STT call is refused")
