"""Orchestrator: the FastAPI ingress deployment. It only builds the HTTP layer's objects
(`voice_orchestrator.api`) from the stage handles, and applies live settings (`reconfigure`)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Mapping
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments._metrics import ServeMeter, keep_gauges_fresh
from deployments._replica import setup_replica
from deployments.stage_client import ConversationsClient, StageClient
from voice_orchestrator.api.gate import Gate
from voice_orchestrator.api.openai.router import OpenAIServices
from voice_orchestrator.api.router import IngressState, create_app
from voice_orchestrator.api.serving import DialogueService
from voice_orchestrator.metrics import WYOMING_CONNECTIONS, MetricSpec
from voice_orchestrator.protocol import EngineInfo
from voice_orchestrator.settings import IngressSettings, Live, apply_live
from voice_orchestrator.status import DeploymentView, StatusReporter
from voice_orchestrator.turn import TurnCore
from voice_orchestrator.wyoming.server import WyomingServer

logger = logging.getLogger("deployments.ingress")
STAGE_WATCH_INTERVAL_S = 1.0
FRESH_VIEW_S = 0.25  # a refusing stage client's fresh view: at most this old


def _name(value: object) -> str:
    # serve.status() hands back Serve's str-enums in some fields and plain strings in others.
    return str(getattr(value, "value", value))


def deployment_views(handles: Mapping[str, DeploymentHandle[Any]]) -> dict[str, DeploymentView]:
    """Serve's view of each stage's deployment (serve.status() is ~50 ms of controller RPC: call it in a
    thread). The handle names its own application: a stage may be shared with another app."""
    applications = serve.status().applications
    views: dict[str, DeploymentView] = {}
    for stage, handle in handles.items():
        application = applications.get(handle.app_name)
        deployment = application.deployments.get(handle.deployment_name) if application else None
        if deployment is not None:
            views[stage] = DeploymentView(
                state=_name(deployment.status),
                replica_states={_name(state): count for state, count in deployment.replica_states.items()},
                message=deployment.message,
                name=handle.deployment_name,
            )
    return views


@serve.deployment(ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=100)
@serve.ingress()  # the app is built per replica, by __serve_build_asgi_app__, around this replica's objects
class Orchestrator:
    def __init__(
        self,
        stt: DeploymentHandle[Any],
        llm: DeploymentHandle[Any],
        tts: DeploymentHandle[Any],
        settings: IngressSettings | None = None,
        conversations: DeploymentHandle[Any] | None = None,
    ) -> None:
        # `settings`: the live settings to start with (a user_config, when there is one, replaces them).
        live = IngressSettings(
            **settings.model_dump(include=set(IngressSettings.model_fields)) if settings else {}
        )
        setup_replica(live.log_transcripts)
        # The one holder of the live settings: reconfigure() swaps it, everything below reads it.
        self._live = Live(live)
        handles = {"stt": stt, "llm": llm, "tts": tts}
        self._views_lock = threading.Lock()
        self._views_asked_at = 0.0
        self._looking = threading.Lock()

        def look_again() -> Awaitable[object]:
            return asyncio.to_thread(self._look_again, handles)

        self._stages = {
            stage: StageClient(handle, stage, self._retry_after, STAGE_WATCH_INTERVAL_S, look_again)
            for stage, handle in handles.items()
        }
        self._conversations = (
            ConversationsClient(conversations, lambda: self._live.current.status_ping_timeout_seconds)
            if conversations
            else None
        )
        stages = self._stages
        core = TurnCore(stages["stt"], stages["llm"], stages["tts"], self._live, self._conversations)
        self._meter = ServeMeter()
        self._gate = Gate(self._live, self._meter)
        dialogues = DialogueService(core, self._gate, self._meter)
        status = StatusReporter(
            {stage: client.evidence for stage, client in self._stages.items()},
            lambda: asyncio.to_thread(self._refresh_views, handles),
            self._engine_info,
        )
        self._configured = False
        openai = OpenAIServices.build(self._gate, core, self._meter, self._engine_info, stages["llm"])
        self._state = IngressState(self._gate, dialogues, status, self._conversations, openai=openai)
        self._wyoming = WyomingServer(openai.gateway, self._meter)
        self._stop_gauges = keep_gauges_fresh(self._meter, self._gauges)

        threading.Thread(target=self._watch_stages, args=(handles,), name="stage-watch", daemon=True).start()

    def _watch_stages(self, handles: Mapping[str, DeploymentHandle[Any]]) -> None:
        """Keep each stage client's view of its deployment fresh (serve.status(), ~50 ms, once a second), so a
        stage with no running replica is refused at once instead of waited for until the stage timeout."""
        while not self._stop_gauges.wait(STAGE_WATCH_INTERVAL_S):
            try:
                self._refresh_views(handles)
            except Exception as error:  # the controller is restarting: keep the last view
                logger.warning("serve.status() failed: %r", error)

    def _look_again(self, handles: Mapping[str, DeploymentHandle[Any]]) -> None:
        """A fresh view for a stage client about to refuse a call, unless the last is under FRESH_VIEW_S old
        (a flood of refusals while a stage is down must not flood the controller)."""
        with self._looking:  # callers refused at once wait for one fetch, not one each
            if time.monotonic() - self._views_asked_at >= FRESH_VIEW_S:
                self._refresh_views(handles)

    def _refresh_views(self, handles: Mapping[str, DeploymentHandle[Any]]) -> dict[str, DeploymentView]:
        """Serve's view of the stages, handed to the stage clients too: what /status reports, they act on
        (a status that says healthy again must not meet a client still refusing on an older view)."""
        asked_at = time.monotonic()
        views = deployment_views(handles)
        with self._views_lock:  # two fetches may cross: the later-asked one wins
            if asked_at >= self._views_asked_at:
                self._views_asked_at = asked_at
                for stage, client in self._stages.items():
                    client.deployment = views.get(stage)
        return views

    async def __serve_build_asgi_app__(self) -> FastAPI:
        """The replica's app; and the Wyoming listener where the starting settings say (on this event loop,
        the one requests run on; an app deployed without a user_config gets no reconfigure() call)."""
        await self._wyoming.apply(self._live.current)
        app = create_app()
        app.state.ingress = self._state
        return app

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """Live settings (the deployment's user_config; see `apply_live`: refused whole when invalid), and
        the Wyoming listener moved to match (a port that cannot be bound fails the start; on a running
        replica it refuses the new settings and the old listener stays)."""
        running = self._live.current if self._configured else None
        live = apply_live(IngressSettings, config, running)
        try:
            await self._wyoming.apply(live)
        except OSError as error:
            message = f"the Wyoming door cannot listen on {live.wyoming_host}:{live.wyoming_port}: {error}"
            if running is None:
                raise RuntimeError(message) from error
            logger.error("user_config refused, the running settings stay: %s", message)
            return
        self._configured = True
        setup_replica(live.log_transcripts)
        self._live.current = live  # turns under way keep the settings they started with
        for spec, value in self._gauges():
            self._meter.record(spec, value)

    def _gauges(self) -> list[tuple[MetricSpec, float]]:
        return [*self._gate.gauges(), (WYOMING_CONNECTIONS, float(self._wyoming.connections))]

    def _retry_after(self) -> int:
        return self._live.current.retry_after_seconds

    async def _engine_info(self, stage: str) -> EngineInfo:
        return await self._stages[stage].info(self._live.current.status_ping_timeout_seconds)

    def __del__(self) -> None:
        self._stop_gauges.set()
