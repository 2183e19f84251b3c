"""The pipeline with fake stages: ordering, timings, error mapping, timeouts, admission."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from tests.audio_factory import encode, tone
from voice_orchestrator.admission import DialogueSlots
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.pipeline import FALLBACK_REPLIES, DialoguePipeline, normalize_language
from voice_orchestrator.protocol import (
    DecodedAudio,
    Reply,
    ReplyRequest,
    SpeechAudio,
    SpeechTask,
    SynthesisRequest,
    Transcription,
)
from voice_orchestrator.settings import OrchestratorSettings

SPEECH = encode(tone(1.2), 16_000, "wav-s16")


class FakeSTT:
    def __init__(self, text: str = "今日の天気は？", language: str = "ja", delay: float = 0.0) -> None:
        self.text, self.language, self.delay = text, language, delay
        self.calls: list[tuple[float, str | None]] = []

    async def transcribe(
        self, audio: DecodedAudio, language: str | None, task: SpeechTask = "transcribe"
    ) -> Transcription:
        self.calls.append((audio.duration_s, language))
        await asyncio.sleep(self.delay)
        return Transcription(text=self.text, language=language or self.language)


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


class FakeTTS:
    def __init__(self) -> None:
        self.requests: list[SynthesisRequest] = []

    async def synthesize(self, request: SynthesisRequest) -> SpeechAudio:
        self.requests.append(request)
        return SpeechAudio(samples=np.zeros(24_000, dtype=np.float32), sample_rate=24_000, voice="fake")


def _pipeline(
    stt: FakeSTT | None = None, llm: FakeLLM | None = None, tts: FakeTTS | None = None, **settings: object
) -> DialoguePipeline:
    return DialoguePipeline(
        stt or FakeSTT(), llm or FakeLLM(), tts or FakeTTS(), OrchestratorSettings.model_validate(settings)
    )


async def test_stages_run_in_order_and_report_timings() -> None:
    stt, llm, tts = FakeSTT(delay=0.02), FakeLLM(answer="**晴れ**です 😀", delay=0.03), FakeTTS()
    result = await _pipeline(stt, llm, tts).run(SPEECH, None, "req-1")
    meta = result.metadata
    [(heard_seconds, forced)] = stt.calls
    assert heard_seconds == pytest.approx(1.2, abs=0.01)
    assert forced is None
    assert llm.requests == [ReplyRequest(text="今日の天気は？", language="ja")]
    assert tts.requests == [SynthesisRequest(text="晴れです", language="ja")]  # markdown and emoji removed
    assert meta.request_id == "req-1"
    assert meta.input_text == "今日の天気は？"
    assert meta.output_text == "晴れです"
    assert meta.output_duration_s == pytest.approx(1.0)
    assert meta.output_sample_rate == 24_000
    assert meta.stt_ms >= 20
    assert meta.llm_ms >= 30
    assert meta.total_ms >= meta.stt_ms + meta.llm_ms + meta.tts_ms


async def test_forced_language_reaches_stt_and_llm() -> None:
    stt, llm = FakeSTT(language="en"), FakeLLM()
    result = await _pipeline(stt, llm).run(SPEECH, " JA ", "r")
    assert stt.calls[0][1] == "ja"
    assert llm.requests[0].language == "ja"
    assert result.metadata.input_language == "ja"


async def test_empty_transcript_is_speech_recognition_failed() -> None:
    with pytest.raises(OrchestratorError) as caught:
        await _pipeline(FakeSTT(text="  ")).run(SPEECH, None, "r")
    assert caught.value.code is OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED
    assert caught.value.http_status == 422


async def test_unspeakable_reply_falls_back_to_an_apology_in_the_language() -> None:
    tts = FakeTTS()
    result = await _pipeline(llm=FakeLLM(answer="🙂 **"), tts=tts).run(SPEECH, None, "r")
    assert result.metadata.output_text == FALLBACK_REPLIES["ja"]
    assert tts.requests[0].text == FALLBACK_REPLIES["ja"]


@pytest.mark.parametrize(
    ("stage", "code"),
    [
        ("stt", OrchestratorErrorCode.STT_SERVICE_UNAVAILABLE),
        ("llm", OrchestratorErrorCode.LLM_SERVICE_UNAVAILABLE),
        ("tts", OrchestratorErrorCode.TTS_SERVICE_UNAVAILABLE),
    ],
)
async def test_a_failing_stage_maps_to_its_own_503(stage: str, code: OrchestratorErrorCode) -> None:
    class Broken:
        async def transcribe(self, *_: object) -> Transcription:
            raise RuntimeError("replica died")

        async def stream(self, *_: object) -> AsyncIterator[str]:
            raise RuntimeError("replica died")
            yield ""  # an async generator, like a real stage's stream

        async def synthesize(self, *_: object) -> SpeechAudio:
            raise RuntimeError("replica died")

    stages: dict[str, object] = {"stt": FakeSTT(), "llm": FakeLLM(), "tts": FakeTTS(), stage: Broken()}
    pipeline = DialoguePipeline(stages["stt"], stages["llm"], stages["tts"], OrchestratorSettings())  # type: ignore[arg-type]
    with pytest.raises(OrchestratorError) as caught:
        await pipeline.run(SPEECH, None, "r")
    assert caught.value.code is code
    assert caught.value.http_status == 503
    assert caught.value.retry_after == 1
    assert "replica died" not in caught.value.message  # internals stay in the logs


async def test_stage_timeout_is_processing_timeout() -> None:
    pipeline = _pipeline(llm=FakeLLM(delay=1.0), llm_timeout_seconds=0.05)
    with pytest.raises(OrchestratorError) as caught:
        await pipeline.run(SPEECH, None, "r")
    assert caught.value.code is OrchestratorErrorCode.PROCESSING_TIMEOUT
    assert caught.value.details == {"stage": "llm", "timeout_s": 0.05}


async def test_orchestrator_errors_from_a_stage_pass_through() -> None:
    busy = OrchestratorError(OrchestratorErrorCode.TOO_MANY_REQUESTS, "queue full", retry_after=2)
    with pytest.raises(OrchestratorError) as caught:
        await _pipeline(llm=FakeLLM(error=busy)).run(SPEECH, None, "r")
    assert caught.value is busy


async def test_invalid_audio_never_reaches_the_stages() -> None:
    stt = FakeSTT()
    with pytest.raises(OrchestratorError) as caught:
        await _pipeline(stt).run(b"not audio", None, "r")
    assert caught.value.code is OrchestratorErrorCode.INVALID_AUDIO_FORMAT
    assert stt.calls == []


def test_language_normalisation() -> None:
    assert normalize_language(None) is None
    assert normalize_language("") is None
    assert normalize_language("auto") is None
    assert normalize_language("EN") == "en"
    with pytest.raises(OrchestratorError) as caught:
        normalize_language("klingon")
    assert caught.value.code is OrchestratorErrorCode.INVALID_REQUEST


def test_slots_refuse_beyond_the_limit_and_free_on_release() -> None:
    slots = DialogueSlots(limit=2, retry_after=3)
    slots.acquire()
    slots.acquire()
    with pytest.raises(OrchestratorError) as caught:
        slots.acquire()
    assert caught.value.code is OrchestratorErrorCode.TOO_MANY_REQUESTS
    assert caught.value.retry_after == 3
    slots.release()
    slots.acquire()
    assert slots.active == 2
