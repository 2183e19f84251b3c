"""One dialogue turn: validate and decode the upload, then STT -> LLM -> TTS with per-stage timings, as
events (transcript, each spoken sentence, done) that both dialogue routes consume.

No Ray import here: the stages arrive as the Protocols of `voice_orchestrator.stages`, so this logic is
unit-tested with fakes in milliseconds, and the ingress deployment only adapts Serve handles to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import numpy as np

from voice_orchestrator.audio import AudioLimits, decode_audio, resample
from voice_orchestrator.errors import (
    STAGE_UNAVAILABLE,
    OrchestratorError,
    OrchestratorErrorCode,
    stage_unavailable,
)
from voice_orchestrator.protocol import (
    DecodedAudio,
    DialogueResult,
    ReplyRequest,
    SpeechAudio,
    SpokenSentence,
    StreamDoneEvent,
    StreamMetadata,
    StreamTranscriptEvent,
    SynthesisRequest,
    Transcription,
    Turn,
)
from voice_orchestrator.reply_guard import GuardedReply, ReplyLimits
from voice_orchestrator.settings import IngressSettings
from voice_orchestrator.stages import (
    ConversationStage,
    LanguageModelStage,
    SpeechToTextStage,
    TextToSpeechStage,
)
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
    if not code.isascii() or code not in WHISPER_LANGUAGES:  # "\u212aa".lower() is "ka"
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST,
            f"Unsupported language {language[:16]!r}; use a Whisper language code such as 'ja' or 'en'.",
            details={"field": "language"},
        )
    return code


SESSION_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def normalize_session_id(session_id: str | None) -> str | None:
    """The request's `session_id`: absent/empty = stateless; otherwise a short opaque token."""
    if session_id is None or not session_id.strip():
        return None
    if not SESSION_ID.fullmatch(session_id.strip()):
        raise OrchestratorError(
            OrchestratorErrorCode.INVALID_REQUEST,
            "session_id must be 1-128 characters of letters, digits, '_', '-', '.' or ':'.",
            details={"field": "session_id"},
        )
    return session_id.strip()


TurnEvent = StreamTranscriptEvent | SpokenSentence | StreamDoneEvent


class DialoguePipeline:
    """One dialogue turn as events: the transcript, each spoken sentence as soon as it is synthesised (while
    the model writes the next), then the timings. Both routes consume the same events: the streaming one
    writes them out as they come, the whole-reply one joins the sentences into one WAV (`run`)."""

    def __init__(
        self,
        stt: SpeechToTextStage,
        llm: LanguageModelStage,
        tts: TextToSpeechStage,
        settings: IngressSettings,
        conversations: ConversationStage | None = None,
    ) -> None:
        self._stt = stt
        self._llm = llm
        self._tts = tts
        self._conversations = conversations
        self.settings = settings

    @property
    def settings(self) -> IngressSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: IngressSettings) -> None:
        """Live settings: turns already under way finish with the values they started with."""
        self._settings = settings
        self._limits = AudioLimits(settings.min_audio_seconds, settings.max_audio_seconds)
        self._timeouts = stage_timeouts(settings)

    async def run(
        self,
        upload: bytes,
        language: str | None,
        request_id: str,
        session_id: str | None = None,
        voice: str | None = None,
    ) -> DialogueResult:
        """The whole reply: the same turn as `stream`, its sentences joined into one recording."""
        spoken: list[SpeechAudio] = []
        async for event in self.stream(upload, language, request_id, session_id, voice):
            if isinstance(event, SpokenSentence):
                spoken.append(event.speech)
            elif isinstance(event, StreamDoneEvent):
                return DialogueResult(metadata=event.metadata, speech=join_speech(spoken))
        raise AssertionError("a turn always ends with its done event or an error")

    async def stream(
        self,
        upload: bytes,
        language: str | None,
        request_id: str,
        session_id: str | None = None,
        voice: str | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """The reply sentence by sentence: each is spoken as soon as the model has written it, while the
        model writes the next. Errors before the transcript event raise; later ones raise between events."""
        started = time.perf_counter()
        audio, request, stt_ms = await self._question(upload, language, session_id)
        heard = request.text
        yield StreamTranscriptEvent(
            request_id=request_id,
            session_id=session_id,
            text=heard,
            language=request.language,
            input_duration_s=round(audio.duration_s, 3),
            stt_ms=round(stt_ms, 1),
        )

        sentences: asyncio.Queue[str | OrchestratorError | None] = asyncio.Queue()
        llm_timing: dict[str, float] = {}
        guarded = GuardedReply(request.language, ReplyLimits.from_settings(self._settings))
        writer = asyncio.create_task(self._write_sentences(request, guarded, sentences, llm_timing))
        spoken: list[str] = []
        tts_ms = 0.0
        first_audio_ms: float | None = None
        output_seconds = 0.0
        sample_rate = 0

        async def texts() -> AsyncIterator[str]:
            while (item := await sentences.get()) is not None:
                if isinstance(item, OrchestratorError):
                    raise item
                yield item
            if not spoken:
                logger.warning(
                    "language model gave no speakable reply; using the fallback",
                    extra={"request_id": request_id, "stage": "llm"},
                )
                yield fallback_reply(request.language)

        try:
            async for text in texts():
                speech, ms = await self._speak(text, request.language, voice)
                tts_ms += ms
                if first_audio_ms is None:
                    first_audio_ms = (time.perf_counter() - started) * 1000.0
                output_seconds += speech.duration_s
                sample_rate = speech.sample_rate
                yield SpokenSentence(index=len(spoken), text=text, speech=speech)
                spoken.append(text)
        finally:
            if not writer.done():  # the client left or a stage failed: stop the model too
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

        answer = "".join(spoken) if request.language in ("ja", "zh") else " ".join(spoken)
        if guarded.cut is not None:
            # The text stays out of the log (personal data): the reason and the size tell what happened.
            logger.warning(
                "reply cut by the guard: %s",
                guarded.cut.value,
                extra={
                    "request_id": request_id,
                    "stage": "llm",
                    "cut_reason": guarded.cut.value,
                    "sentences": len(spoken),
                },
            )
        await self._remember(session_id, heard, answer)
        yield StreamDoneEvent(
            metadata=StreamMetadata(
                request_id=request_id,
                input_text=heard,
                input_language=request.language,
                input_duration_s=round(audio.duration_s, 3),
                output_text=answer,
                output_duration_s=round(output_seconds, 3),
                output_sample_rate=sample_rate,
                stt_ms=round(stt_ms, 1),
                llm_ms=round(llm_timing.get("llm_ms", 0.0), 1),
                tts_ms=round(tts_ms, 1),
                total_ms=round((time.perf_counter() - started) * 1000.0, 1),
                time_to_first_audio_ms=round(first_audio_ms or 0.0, 1),
                sentences=len(spoken),
                cut_reason=guarded.cut.value if guarded.cut is not None else None,
            )
        )

    async def _write_sentences(
        self,
        request: ReplyRequest,
        guarded: GuardedReply,
        sentences: asyncio.Queue[str | OrchestratorError | None],
        timing: dict[str, float],
    ) -> None:
        """Stream the model's reply into speakable sentences on the queue; end with None or the error. The
        guard stops pulling (and so stops the model) as soon as the reply degenerates or grows too long."""
        started = time.perf_counter()
        timeout = self._timeouts["llm"]
        soft_split = (self._settings.stream_soft_split_chars, self._settings.stream_first_chunk_chars)
        try:
            async with asyncio.timeout(timeout):
                async for sentence in guarded.sentences(self._llm.stream(request), *soft_split):
                    speakable = clean_for_speech(sentence)
                    if speakable:
                        await sentences.put(speakable)
        except OrchestratorError as error:
            await sentences.put(error)
        except TimeoutError:
            await sentences.put(self._stage_error("llm", TimeoutError(), timeout))
        except Exception as exc:
            await sentences.put(self._stage_error("llm", exc, timeout))
        else:
            timing["llm_ms"] = (time.perf_counter() - started) * 1000.0
            await sentences.put(None)

    async def _question(
        self, upload: bytes, language: str | None, session_id: str | None
    ) -> tuple[DecodedAudio, ReplyRequest, float]:
        """What the language model is asked: the transcript, its language and the session's earlier turns.
        The history is fetched while the speech is recognised: it must not add a hop to the critical path."""
        history = asyncio.create_task(self._history(session_id))
        try:
            audio, transcription, stt_ms = await self._hear(upload, language)
        except BaseException:
            history.cancel()
            raise
        question = ReplyRequest(
            text=transcription.text, language=transcription.language, history=await history
        )
        return audio, question, stt_ms

    async def _hear(self, upload: bytes, language: str | None) -> tuple[DecodedAudio, Transcription, float]:
        """Decode and transcribe; the transcription's language is the one the reply will use."""
        forced_language = normalize_language(language)
        # Decoding is CPU work on untrusted bytes: off the event loop so other requests keep flowing.
        audio = await asyncio.to_thread(decode_audio, upload, self._limits)
        transcription, stt_ms = await self._stage("stt", lambda: self._stt.transcribe(audio, forced_language))
        heard = require_speech(transcription, audio)
        language_used = forced_language or transcription.language
        return audio, heard.model_copy(update={"language": language_used}), stt_ms

    async def _speak(self, text: str, language: str, voice: str | None) -> tuple[SpeechAudio, float]:
        request = SynthesisRequest(text=text, language=language, voice=voice)
        return await self._stage("tts", lambda: self._tts.synthesize(request))

    async def _history(self, session_id: str | None) -> list[Turn]:
        if session_id is None or self._conversations is None:
            return []
        try:
            return await self._conversations.history(session_id)
        except Exception as exc:  # memory is a nicety: answer without it rather than fail the dialogue
            logger.warning("conversation history unavailable: %r", exc, extra={"stage": "session"})
            return []

    async def _remember(self, session_id: str | None, heard: str, answer: str) -> None:
        if session_id is None or self._conversations is None:
            return
        try:
            await self._conversations.remember(session_id, Turn(user=heard, assistant=answer))
        except Exception as exc:
            logger.warning("conversation turn not stored: %r", exc, extra={"stage": "session"})

    async def _stage(self, stage: str, call: Callable[[], Awaitable[T]]) -> tuple[T, float]:
        """Run one stage with its timeout; map its failures to that stage's error code."""
        started = time.perf_counter()
        timeout = self._timeouts[stage]
        try:
            result = await asyncio.wait_for(call(), timeout=timeout)
        except OrchestratorError:
            raise
        except Exception as exc:
            raise self._stage_error(stage, exc, timeout) from exc
        return result, (time.perf_counter() - started) * 1000.0

    def _stage_error(self, stage: str, exc: BaseException, timeout: float) -> OrchestratorError:
        return stage_error(stage, exc, timeout, self._settings.retry_after_seconds)


def stage_timeouts(settings: IngressSettings) -> dict[str, float]:
    return {
        "stt": settings.stt_timeout_seconds,
        "llm": settings.llm_timeout_seconds,
        "tts": settings.tts_timeout_seconds,
    }


def stage_error(stage: str, exc: BaseException, timeout: float, retry_after: int) -> OrchestratorError:
    """What a failed stage call is to the client: past its timeout a 504, else the stage's own 503."""
    if isinstance(exc, TimeoutError):
        return OrchestratorError(
            OrchestratorErrorCode.PROCESSING_TIMEOUT,
            f"The {stage.upper()} stage did not finish within {timeout:g} s.",
            details={"stage": stage, "timeout_s": timeout},
        )
    code = STAGE_UNAVAILABLE[stage]
    logger.error("%s stage failed: %r", stage, exc, extra={"stage": stage, "error_code": code.value})
    return stage_unavailable(stage, retry_after)


def require_speech(transcription: Transcription, audio: DecodedAudio) -> Transcription:
    """The transcription with its text trimmed; one without any text is the contract's 422."""
    text = transcription.text.strip()
    if not text:
        raise OrchestratorError(
            OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED,
            "No speech was recognised in the audio.",
            details={"input_duration_s": round(audio.duration_s, 3)},
        )
    return transcription.model_copy(update={"text": text})


def join_speech(parts: list[SpeechAudio]) -> SpeechAudio:
    """The sentences of one reply as one recording, at the highest rate among them (voices differ)."""
    if not parts:
        raise ValueError("a reply has at least one spoken sentence")
    rate = max(part.sample_rate for part in parts)
    samples = np.concatenate([resample(part.samples, part.sample_rate, rate) for part in parts])
    return SpeechAudio(samples=samples, sample_rate=rate, voice=parts[0].voice)


def fallback_reply(language: str) -> str:
    """Said when the language model produced nothing speakable, so the caller still hears an answer."""
    return FALLBACK_REPLIES.get(language, FALLBACK_REPLIES["en"])
