"""The stand-in stages the unit tests share: fakes of the stage Protocols (voice_orchestrator/stages.py) and a
turn core built on them. Pure logic only: never the thing an integration test checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI

from tests.audio_factory import encode, tone
from voice_orchestrator.api.gate import Gate
from voice_orchestrator.api.openai.router import OpenAIServices
from voice_orchestrator.api.router import IngressState, create_app
from voice_orchestrator.api.serving import DialogueService
from voice_orchestrator.conversation import ConversationStore
from voice_orchestrator.metrics import MetricSpec
from voice_orchestrator.protocol import (
    DecodedAudio,
    EngineInfo,
    Reply,
    ReplyRequest,
    SpeechAudio,
    SpeechTask,
    SynthesisRequest,
    TokenUsage,
    Transcription,
    Turn,
)
from voice_orchestrator.settings import IngressSettings, Live, OrchestratorSettings
from voice_orchestrator.status import CallEvidence, DeploymentView, StatusReporter
from voice_orchestrator.turn import TurnCore

SPEECH = encode(tone(1.2), 16_000, "wav-s16")


class FakeSTT:
    def __init__(self, text: str = "今日の天気は？", language: str = "ja", delay: float = 0.0) -> None:
        self.text, self.language, self.delay = text, language, delay
        self.calls: list[tuple[float, str | None]] = []

    async def transcribe(
        self, audio: DecodedAudio, language: str | None, task: SpeechTask = "transcribe"
    ) -> Transcription:
        self.calls.append((audio.duration_s, language))
        text = self.text  # what was said when the audio was sent
        await asyncio.sleep(self.delay)
        return Transcription(text=text, language=language or self.language)


class FakeLLM:
    """Answers with `answer`; streams it in `chunk`-character deltas, `delay` seconds apart."""

    def __init__(
        self,
        answer: str = "晴れです。",
        error: Exception | None = None,
        delay: float = 0.0,
        chunk: int = 2,
        fail_after: int | None = None,
    ) -> None:
        self.answer, self.error, self.delay = answer, error, delay
        self.chunk, self.fail_after = chunk, fail_after
        self.requests: list[ReplyRequest] = []
        self.closed = False

    async def reply(self, request: ReplyRequest) -> Reply:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        if self.error:
            raise self.error
        return Reply(text=self.answer, language=request.language)

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        self.requests.append(request)
        try:
            for start in range(0, len(self.answer), self.chunk):
                await asyncio.sleep(self.delay)
                if self.error and (self.fail_after is None or start >= self.fail_after):
                    raise self.error
                yield self.answer[start : start + self.chunk]
        finally:
            self.closed = True

    async def usage(self, request: ReplyRequest, completion: str) -> TokenUsage:
        """A token a word (the chat routes' usage)."""
        prompt, written = len(request.text.split()), len(completion.split())
        return TokenUsage(prompt_tokens=prompt, completion_tokens=written, total_tokens=prompt + written)


class FakeTTS:
    def __init__(self) -> None:
        self.requests: list[SynthesisRequest] = []

    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        self.requests.append(request)
        return SpeechAudio(samples=np.zeros(24_000, dtype=np.float32), sample_rate=24_000, voice="fake")


class SlowTTS(FakeTTS):
    """Speech whose length follows the text; each synthesis takes `delay` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay

    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        self.requests.append(request)
        await asyncio.sleep(self.delay)
        samples = np.full(1000 * len(request.text), 0.1, dtype=np.float32)
        return SpeechAudio(samples=samples, sample_rate=16_000, voice="fake")


class SerialTTS(FakeTTS):
    """One replica: syntheses made one at a time, in arrival order, each taking `delay` seconds; what arrived
    when, and what was cancelled."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.arrived: list[float] = []
        self.finished: list[float] = []
        self.cancelled = 0
        self._engine = asyncio.Lock()

    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        self.requests.append(request)
        self.arrived.append(time.perf_counter())
        try:
            async with self._engine:
                await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.finished.append(time.perf_counter())
        return SpeechAudio(samples=np.full(1000, 0.1, dtype=np.float32), sample_rate=16_000, voice="fake")


class FakeConversations:
    def __init__(self) -> None:
        self.store = ConversationStore(max_turns=4, ttl_seconds=60, max_sessions=10)

    async def history(self, session_id: str) -> list[Turn]:
        return self.store.history(session_id)

    async def remember(self, session_id: str, turn: Turn) -> None:
        self.store.append(session_id, turn)

    async def forget(self, session_id: str) -> bool:
        return self.store.delete(session_id)


def turn_core(
    stt: object | None = None,
    llm: object | None = None,
    tts: object | None = None,
    conversations: object | None = None,
    **settings: object,
) -> TurnCore:
    """A turn core on fakes (each defaulting to the plain one), with these live settings."""
    live = Live[IngressSettings](OrchestratorSettings.model_validate(settings))
    return TurnCore(
        stt or FakeSTT(),  # type: ignore[arg-type]
        llm or FakeLLM(),  # type: ignore[arg-type]
        tts or FakeTTS(),  # type: ignore[arg-type]
        live,
        conversations,  # type: ignore[arg-type]
    )


class RecordingMeter:
    def __init__(self) -> None:
        self.records: list[tuple[str, float]] = []

    def record(self, spec: MetricSpec, value: float, tags: Any = None) -> None:
        self.records.append((spec.name, value))


ENGINES = {
    "stt": EngineInfo(engine="fake", model="whisper-fake"),
    "llm": EngineInfo(engine="fake", model="fake-lm"),
    "tts": EngineInfo(
        engine="fake",
        model="fake-voices",
        extra={
            "voices": [{"id": "jf_alpha", "languages": ["ja"]}, {"id": "en_US-joe", "languages": ["en"]}],
            "default_voices": {"ja": "jf_alpha", "en": "en_US-joe"},
        },
    ),
}


@dataclass
class FakeApp:
    """The real HTTP layer (both front doors: the dialogue routes and /v1) on fake stages, without Ray."""

    client: httpx.AsyncClient
    app: FastAPI
    gate: Gate
    live: Live[IngressSettings]
    stt: FakeSTT
    llm: FakeLLM
    tts: FakeTTS


def fake_app(
    stt: FakeSTT | None = None, llm: FakeLLM | None = None, tts: FakeTTS | None = None, **settings: Any
) -> FakeApp:
    stt, llm, tts = stt or FakeSTT(), llm or FakeLLM(), tts or FakeTTS()
    live = Live(IngressSettings(**settings))
    meter = RecordingMeter()
    core = TurnCore(stt, llm, tts, live)
    gate = Gate(live, meter)

    async def no_deployments() -> dict[str, DeploymentView]:
        return {}

    async def info(stage: str) -> EngineInfo:
        return ENGINES[stage]

    app = create_app()
    openai = OpenAIServices.build(gate, core, meter, info, llm)
    status = StatusReporter({"stt": CallEvidence()}, no_deployments, info)
    app.state.ingress = IngressState(gate, DialogueService(core, gate, meter), status, None, openai=openai)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return FakeApp(client, app, gate, live, stt, llm, tts)
