"""Fault injection for integration tests: a stand-in stage that fails or stalls, and helpers that deploy a
second real Orchestrator wired to it (and to the main app's real stages) or kill a real replica.

The Orchestrator under test is always the real ingress; only the broken stage is a stand-in.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import ray
from ray import cloudpickle, serve
from ray.serve.handle import DeploymentHandle

from deployments.ingress import Orchestrator
from graph import _deployment
from voice_orchestrator.protocol import EngineInfo, Reply, ReplyRequest, TokenUsage
from voice_orchestrator.settings import OrchestratorSettings

# Replicas cannot import the tests package: ship this module's classes by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # type: ignore[no-untyped-call]

STAGE_DEPLOYMENTS = {"stt": "SpeechToText", "llm": "LanguageModel", "tts": "TextToSpeech"}


@serve.deployment(ray_actor_options={"num_cpus": 0.01}, max_ongoing_requests=1, max_queued_requests=1)
class FaultyStage:
    """Raises like a broken engine; with `stall_s`, first holds its only slot that long (a slow replica)."""

    def __init__(self, stall_s: float = 0.0) -> None:
        self._stall_s = stall_s

    async def _fail(self) -> Any:
        await asyncio.sleep(self._stall_s)
        raise RuntimeError("injected engine failure")

    async def transcribe(self, *_: Any) -> Any:
        return await self._fail()

    async def reply(self, *_: Any) -> Any:
        return await self._fail()

    async def synthesize(self, *_: Any) -> Any:
        return await self._fail()

    async def info(self) -> EngineInfo:
        return EngineInfo(engine="fault-injection", model="none")


@serve.deployment(ray_actor_options={"num_cpus": 0.01})
class ScriptedLanguageModel:
    """A stand-in model that says how many earlier turns it was given, so a test can see the history reach
    it; with `fail_after_first`, it breaks after streaming its first sentence (a model dying mid-reply)."""

    def __init__(self, fail_after_first: bool = False, pause_s: float = 0.2) -> None:
        self._fail_after_first = fail_after_first
        self._pause_s = pause_s

    async def reply(self, request: ReplyRequest) -> Reply:
        text = "".join([delta async for delta in self.stream(request)])
        return Reply(text=text, language=request.language)

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        yield f"I remember {len(request.history)} turns. "
        await asyncio.sleep(self._pause_s)
        if self._fail_after_first:
            raise RuntimeError("injected engine failure")
        yield "That is all for now."

    async def info(self) -> EngineInfo:
        return EngineInfo(engine="scripted", model="none")


@serve.deployment(ray_actor_options={"num_cpus": 0.01})
class BabblingLanguageModel:
    """A stand-in model that degenerates like the packaged Gemma 270M did on the moon question: one good
    sentence, then a digit run that would go on to max_tokens. Counts the deltas it was asked for."""

    def __init__(self) -> None:
        self.pulled = 0

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        yield "The moon is the largest planet in the solar system. "
        yield "It is 3"
        for _ in range(500):
            self.pulled += 1
            await asyncio.sleep(0.01)
            yield "0"

    async def deltas_pulled(self) -> int:
        return self.pulled

    async def info(self) -> EngineInfo:
        return EngineInfo(engine="babbling", model="none")


@serve.deployment(ray_actor_options={"num_cpus": 0.01})
class EchoLanguageModel:
    """A stand-in model that writes whatever the test chose: the user's last message back, or the reply set
    by `script` (the dialogue's question is speech, so its reply cannot come from the question); streamed
    in deltas of `delta_chars` characters as a model streams tokens. One replica, one test at a time: the
    script is this replica's state. Counts the replies it wrote, so a test sees its text reach the turn."""

    def __init__(self) -> None:
        self._reply: str | None = None
        self._delta_chars = 4
        self._written = 0

    async def script(self, reply: str | None, delta_chars: int) -> None:
        """What the next replies are (None: the user's last message), and their delta size."""
        if delta_chars < 1:
            raise ValueError("delta_chars must be positive")
        self._reply, self._delta_chars = reply, delta_chars

    def _text(self, request: ReplyRequest) -> str:
        return request.text if self._reply is None else self._reply

    async def reply(self, request: ReplyRequest) -> Reply:
        text = "".join([delta async for delta in self.stream(request)])
        return Reply(text=text, language=request.language, completion_tokens=len(text.split()))

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        self._written += 1
        text, size = self._text(request), self._delta_chars
        for start in range(0, len(text), size):
            await asyncio.sleep(0)  # a real model yields between tokens: the guard may stop pulling here
            yield text[start : start + size]

    async def usage(self, request: ReplyRequest, completion: str) -> TokenUsage:
        prompt, written = len(self._text(request).split()), len(completion.split())
        return TokenUsage(prompt_tokens=prompt, completion_tokens=written, total_tokens=prompt + written)

    async def replies_written(self) -> int:
        return self._written

    async def info(self) -> EngineInfo:
        return EngineInfo(engine="echo", model="echo")


@serve.deployment(ray_actor_options={"num_cpus": 0.01})
class CrashingLanguageModel:
    """A stand-in model whose replica dies in its constructor as llama.cpp's AMX path killed the real one on
    its warm-up generation: SIGSEGV, no Python exception, the worker process gone."""

    def __init__(self) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)


def deploy_orchestrator(
    name: str,
    settings: OrchestratorSettings,
    faulty_stage: str | None = None,
    stall_s: float = 0.0,
    scripted_llm: bool | None = None,
    babbling_llm: bool = False,
    scripted_pause_s: float = 0.2,
    crashing_llm: bool = False,
    echo_llm: bool = False,
) -> str:
    """A second real Orchestrator app at /<name>, reusing the main app's stages (and session memory) except
    `faulty_stage`, or with the scripted model (None: the real one; False: it answers; True: it breaks), the
    babbling, crashing or echoing one."""
    stages: dict[str, Any] = {
        stage: serve.get_deployment_handle(deployment, app_name="voice")
        for stage, deployment in STAGE_DEPLOYMENTS.items()
    }
    if faulty_stage is not None:
        stages[faulty_stage] = _deployment(FaultyStage).bind(stall_s)
    if scripted_llm is not None:
        stages["llm"] = _deployment(ScriptedLanguageModel).bind(scripted_llm, scripted_pause_s)
    if babbling_llm:
        stages["llm"] = _deployment(BabblingLanguageModel).bind()
    if crashing_llm:
        stages["llm"] = _deployment(CrashingLanguageModel).bind()
    if echo_llm:
        stages["llm"] = _deployment(EchoLanguageModel).bind()
    conversations = serve.get_deployment_handle("Conversations", app_name="voice")
    ingress = _deployment(Orchestrator).options(ray_actor_options={"num_cpus": 0.01})
    app = ingress.bind(stages["stt"], stages["llm"], stages["tts"], settings, conversations)
    # A stage that never starts leaves the app short of RUNNING: then only wait for the ingress.
    target = serve.RunTarget(app, name=name, route_prefix=f"/{name}")
    serve.run_many([target], wait_for_applications_running=not crashing_llm)
    return f"/{name}"


def kill_replica(deployment: str, app: str = "voice") -> None:
    """Kill one replica actor of a deployment, as a crash would; Serve must notice and replace it."""
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if f"{app}#{deployment}#" in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
            return
    raise LookupError(f"no replica of {app}/{deployment}")


def handle_of(stage: str) -> DeploymentHandle[Any]:
    return serve.get_deployment_handle(STAGE_DEPLOYMENTS[stage], app_name="voice")
