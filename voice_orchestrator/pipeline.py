"""One dialogue turn: validate and decode the upload, then STT -> LLM -> TTS with per-stage timings.

No Ray import here: the stages arrive as the Protocols of `voice_orchestrator.stages`, so this logic is
unit-tested with fakes in milliseconds, and the ingress deployment only adapts Serve handles to them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.errors import STAGE_UNAVAILABLE, OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import (
    DialogueResult,
    ProcessingMetadata,
    ReplyRequest,
    SynthesisRequest,
)
from voice_orchestrator.settings import OrchestratorSettings
from voice_orchestrator.stages import LanguageModelStage, SpeechToTextStage, TextToSpeechStage
from voice_orchestrator.text import WHISPER_LANGUAGES, clean_for_speech

logger = logging.getLogger("voice_orchestrator.pipeline")

T = TypeVar("T")

# Said when the language model produced nothing speakable, so the caller still hears an answer.
FALLBACK_REPLIES: dict[str, str] = {
    "ja": "すみません、うまく答えられませんでした。",
    "en": "Sorry, I don't have an answer to that.",
}


def normalize_language(language: str | None) -> str | None:
    """The request's `language` field: absent/empty/"auto" = detect; otherwise a Whisper language code."""
    if language is None:
        return None
    code = language.strip().lower()
    if code in {"", "auto"}:
        return None
    if code not in WHISPER_LANGUAGES:
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST,
            f"Unsupported language {language[:16]!r}; use a Whisper language code such as 'ja' or 'en'.",
            details={"field": "language"},
        )
    return code


class DialogueSlots:
    """Admission control: at most `limit` dialogues in flight; the excess is refused at once (429)."""

    def __init__(self, limit: int, retry_after: int) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.active = 0

    def acquire(self) -> None:
        if self.active >= self.limit:
            raise OrchestratorError(
                OrchestratorErrorCode.TOO_MANY_REQUESTS,
                f"The server is handling its maximum of {self.limit} dialogues; retry shortly.",
                details={"max_concurrent_dialogues": self.limit},
                retry_after=self.retry_after,
            )
        self.active += 1

    def release(self) -> None:
        self.active = max(0, self.active - 1)


class DialoguePipeline:
    def __init__(
        self,
        stt: SpeechToTextStage,
        llm: LanguageModelStage,
        tts: TextToSpeechStage,
        settings: OrchestratorSettings,
    ) -> None:
        self._stt = stt
        self._llm = llm
        self._tts = tts
        self._settings = settings
        self._limits = AudioLimits(settings.min_audio_seconds, settings.max_audio_seconds)
        self._timeouts = {
            "stt": settings.stt_timeout_seconds,
            "llm": settings.llm_timeout_seconds,
            "tts": settings.tts_timeout_seconds,
        }

    async def run(self, upload: bytes, language: str | None, request_id: str) -> DialogueResult:
        started = time.perf_counter()
        forced_language = normalize_language(language)
        # Decoding is CPU work on untrusted bytes: off the event loop so other requests keep flowing.
        audio = await asyncio.to_thread(decode_audio, upload, self._limits)

        transcription, stt_ms = await self._stage("stt", lambda: self._stt.transcribe(audio, forced_language))
        heard = transcription.text.strip()
        if not heard:
            raise OrchestratorError(
                OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED,
                "No speech was recognised in the audio.",
                details={"input_duration_s": round(audio.duration_s, 3)},
            )
        spoken_language = forced_language or transcription.language

        reply, llm_ms = await self._stage(
            "llm", lambda: self._llm.reply(ReplyRequest(text=heard, language=spoken_language))
        )
        answer = clean_for_speech(reply.text)
        if not answer:
            logger.warning(
                "language model gave no speakable reply; using the fallback",
                extra={"request_id": request_id, "stage": "llm"},
            )
            answer = FALLBACK_REPLIES.get(spoken_language, FALLBACK_REPLIES["en"])

        speech, tts_ms = await self._stage(
            "tts", lambda: self._tts.synthesize(SynthesisRequest(text=answer, language=spoken_language))
        )
        total_ms = (time.perf_counter() - started) * 1000.0
        metadata = ProcessingMetadata(
            request_id=request_id,
            input_text=heard,
            input_language=spoken_language,
            input_duration_s=round(audio.duration_s, 3),
            output_text=answer,
            output_duration_s=round(speech.duration_s, 3),
            output_sample_rate=speech.sample_rate,
            stt_ms=round(stt_ms, 1),
            llm_ms=round(llm_ms, 1),
            tts_ms=round(tts_ms, 1),
            total_ms=round(total_ms, 1),
        )
        return DialogueResult(metadata=metadata, speech=speech)

    async def _stage(self, stage: str, call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        """Run one stage with its timeout; map its failures to that stage's error code."""
        started = time.perf_counter()
        timeout = self._timeouts[stage]
        try:
            result = await asyncio.wait_for(call(), timeout=timeout)
        except OrchestratorError:
            raise
        except TimeoutError:
            raise OrchestratorError(
                OrchestratorErrorCode.PROCESSING_TIMEOUT,
                f"The {stage.upper()} stage did not finish within {timeout:g} s.",
                details={"stage": stage, "timeout_s": timeout},
            ) from None
        except Exception as exc:
            logger.error(
                "%s stage failed: %r",
                stage,
                exc,
                extra={"stage": stage, "error_code": STAGE_UNAVAILABLE[stage].value},
            )
            raise OrchestratorError(
                STAGE_UNAVAILABLE[stage],
                f"The {stage.upper()} service is unavailable; retry shortly.",
                details={"stage": stage},
                retry_after=self._settings.retry_after_seconds,
            ) from exc
        return result, (time.perf_counter() - started) * 1000.0
