"""The turn core with fake stages: ordering, timings, error mapping, timeouts, admission."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.fakes import SPEECH, FakeLLM, FakeSTT, FakeTTS, turn_core
from voice_orchestrator.admission import DialogueSlots
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import ReplyRequest, SpeechAudio, SynthesisRequest, Transcription
from voice_orchestrator.turn import FALLBACK_REPLIES, TurnCore, normalize_language


def _pipeline(
    stt: FakeSTT | None = None, llm: FakeLLM | None = None, tts: FakeTTS | None = None, **settings: object
) -> TurnCore:
    return turn_core(stt, llm, tts, **settings)


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
    pipeline = turn_core(stages["stt"], stages["llm"], stages["tts"])
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
