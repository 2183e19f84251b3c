"""One spoken turn, whatever door it came through: hear -> reply -> speak, as events (the transcript, each
spoken sentence, done with the timings) that every route which speaks consumes — `/dialogue` (joined into one
WAV), `/dialogue/stream` (NDJSON), spoken `/v1/chat/completions` (SSE) and, through `say`, `/v1/audio/speech`.

One rule for each thing, here only:
- entry by input: decoded audio (`TurnCore.answer`), a question already in text (`TurnCore.reply`), text to
  speak (`TurnCore.say`);
- the reply goes through the reply guard, and a reply with nothing speakable is the fallback reply;
- prefetch: the model is read while sentences are spoken, and the next sentence's synthesis is queued at
  the stage while the current one is made (two calls in flight: no round trip between sentences);
- the language a sentence is spoken in: Japanese by its script, else the turn's (English in a Japanese turn);
- timeouts: each STT and TTS call within its stage timeout, the whole reply within the LLM timeout;
- a turn can be interrupted (`SpokenTurn.interrupt`, with how much was played): the model and pending
  synthesis stop at once, the done event says `interrupted`, and the session memory keeps the question and
  the part of the answer that was delivered — as it does when the client simply leaves.
The live settings are read once per turn: a turn in flight keeps its values.

No Ray import here: the stages arrive as the Protocols of `voice_orchestrator.stages`, so this logic is
unit-tested with fakes in milliseconds, and the ingress deployment only adapts Serve handles to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, TypeVar, cast

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
    SpeechTask,
    SpokenSentence,
    StreamDoneEvent,
    StreamMetadata,
    StreamTranscriptEvent,
    SynthesisRequest,
    Transcription,
    Turn,
)
from voice_orchestrator.reply_guard import GuardedReply, ReplyLimits
from voice_orchestrator.settings import IngressSettings, Live
from voice_orchestrator.stages import (
    ConversationStage,
    LanguageModelStage,
    SpeechToTextStage,
    TextToSpeechStage,
)
from voice_orchestrator.text import WHISPER_LANGUAGES, clean_for_speech, is_japanese

logger = logging.getLogger("voice_orchestrator.turn")

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
# The voice for one sentence (None: the engine's default voice for the sentence's script).
VoiceChoice = Callable[[str], str | None]


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class BusyTime:
    """How long a stage was at work for a turn whose calls overlap (queued behind each other): the length of
    the union of their intervals, taken as they finish, not the sum of their times."""

    def __init__(self) -> None:
        self._until = 0.0

    def add(self, started: float, finished: float) -> float:
        """Milliseconds this call adds to the time the stage was busy (perf_counter seconds in)."""
        added = max(0.0, finished - max(started, self._until))
        self._until = max(self._until, finished)
        return added * 1000.0


def speech_language(text: str, language: str | None) -> str:
    """The language a sentence is spoken in: Japanese by its script (only a Japanese voice reads kana and
    kanji); a sentence without either in a Japanese turn is English ("Tokyo." answering 「首都は？」);
    otherwise the turn's language (English when it names none)."""
    if is_japanese(text):
        return "ja"
    spoken = (language or "en").strip().lower()
    return "en" if spoken == "ja" else spoken


def joined(texts: list[str], language: str) -> str:
    """Sentences as one text: Japanese and Chinese run on, other languages are spaced."""
    return "".join(texts) if language in ("ja", "zh") else " ".join(texts)


class Prefetched(Generic[T]):
    """`work` applied to each text of `texts`, in order, by a task that keeps up to `ahead` of them started
    beyond what its consumer has taken: with two, the next sentence's synthesis is already queued at the
    stage while this one is made, so the stage never waits a round trip between sentences (one replica still
    makes them one after the other; several make them side by side). `cancel()` stops the task and every
    call it started at once; iteration then ends. A failure is raised to the consumer in its turn."""

    def __init__(
        self, texts: AsyncIterator[str], work: Callable[[str], Awaitable[T]], ahead: int = 2
    ) -> None:
        self._results: asyncio.Queue[object] = asyncio.Queue()
        self._room = asyncio.Semaphore(ahead)
        self._cancelled = False
        self._calls: set[asyncio.Task[T]] = set()
        self._task = asyncio.create_task(self._run(texts, work))

    async def _run(self, texts: AsyncIterator[str], work: Callable[[str], Awaitable[T]]) -> None:
        try:
            async for text in texts:
                await self._room.acquire()
                call = asyncio.ensure_future(work(text))
                self._calls.add(call)
                call.add_done_callback(self._calls.discard)
                self._results.put_nowait((text, call))
        except Exception as error:  # handed to the consumer, which raises it after the calls before it
            self._results.put_nowait(_Failure(error))
        finally:
            self._results.put_nowait(_END)
            close = getattr(texts, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await close()

    def __aiter__(self) -> Prefetched[T]:
        return self

    async def __anext__(self) -> tuple[str, T]:
        if self._cancelled:  # a result made before the cut is never handed out
            raise StopAsyncIteration
        item = await self._results.get()
        if item is _END or self._cancelled:
            self._results.put_nowait(_END)  # ended for good
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            raise item.error
        text, call = cast("tuple[str, asyncio.Task[T]]", item)
        try:
            result = await call
        except asyncio.CancelledError:
            if self._cancelled and call.cancelled():  # cut by cancel(), not the consumer's own cancellation
                raise StopAsyncIteration from None
            raise
        if self._cancelled:
            raise StopAsyncIteration
        self._room.release()
        return text, result

    def cancel(self) -> None:
        self._cancelled = True
        self._task.cancel()
        for call in list(self._calls):
            call.cancel()

    async def aclose(self) -> None:
        self.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        calls = list(self._calls)
        if calls:
            await asyncio.gather(*calls, return_exceptions=True)


class SpokenTurn:
    """One turn in flight: iterate it for its events (the transcript when it started from audio, each spoken
    sentence, then done); `interrupt()` cuts it. Built by `TurnCore.answer` / `TurnCore.reply`."""

    def __init__(
        self,
        core: TurnCore,
        *,
        request_id: str,
        session_id: str | None,
        voice: VoiceChoice,
        audio: DecodedAudio | None = None,
        forced_language: str | None = None,
        question: ReplyRequest | None = None,
        settings: IngressSettings | None = None,
        speak: bool = True,
    ) -> None:
        self._core = core
        self._speak = speak  # False: the sentences come without audio (a text-only answer)
        self._settings = settings or core.settings  # read once: the turn keeps these values to its end
        self.request_id = request_id
        self.session_id = session_id
        self._voice = voice
        self._audio = audio
        self._forced_language = forced_language
        self.question = question
        self.guarded: GuardedReply | None = None
        self.spoken: list[SpokenSentence] = []  # delivered: each was handed to the consumer
        self._writer: asyncio.Task[None] | None = None
        self._speaking: Prefetched[tuple[SpeechAudio, float]] | None = None
        self._tts_busy = BusyTime()
        self._interrupted = False
        self._played_ms: float | None = None
        self._remembered = False

    def __aiter__(self) -> AsyncIterator[TurnEvent]:
        return self._events()

    @property
    def model_text(self) -> str:
        """What the model wrote, up to where the guard cut it (for token usage)."""
        return self.guarded.text if self.guarded is not None else ""

    def interrupt(self, played_ms: float | None = None) -> None:
        """Cut the turn now: the model and any synthesis still pending stop, and the events end with done
        (`interrupted`). `played_ms`: how much of the delivered speech the listener heard (None: all of it);
        the memory keeps only that part of the answer."""
        self._interrupted = True
        self._played_ms = played_ms
        if self._speaking is not None:
            self._speaking.cancel()
        if self._writer is not None:
            self._writer.cancel()

    def delivered(self) -> str:
        """The answer as far as it was delivered (and heard, when the interruption said how much)."""
        language = self.question.language if self.question is not None else "en"
        parts = [(sentence.text, sentence.speech.duration_s) for sentence in self.spoken]
        return heard_text(parts, self._played_ms, language)

    async def _events(self) -> AsyncIterator[TurnEvent]:
        core, settings = self._core, self._settings
        started = time.perf_counter()
        history = asyncio.create_task(core.history(self.session_id))
        stt_ms = 0.0
        try:
            if self._audio is not None:
                transcription, stt_ms = await core.hear(self._audio, self._forced_language, settings=settings)
                self.question = ReplyRequest(text=transcription.text, language=transcription.language)
        except BaseException:
            history.cancel()
            raise
        assert self.question is not None
        question = self.question.model_copy(update={"history": await history or self.question.history})
        self.question = question
        if self._audio is not None:
            yield StreamTranscriptEvent(
                request_id=self.request_id,
                session_id=self.session_id,
                text=question.text,
                language=question.language,
                input_duration_s=round(self._audio.duration_s, 3),
                stt_ms=round(stt_ms, 1),
            )
        guarded = self.guarded = GuardedReply(question.language, ReplyLimits.from_settings(settings))
        sentences: asyncio.Queue[str | OrchestratorError | None] = asyncio.Queue()
        llm_timing: dict[str, float] = {}
        tts_ms = 0.0
        first_audio_ms: float | None = None
        finished = False
        try:
            if not self._interrupted:
                self._writer = asyncio.create_task(
                    core.write_reply(question, guarded, sentences, llm_timing, settings)
                )
                self._speaking = Prefetched(
                    self._texts(sentences, question.language),
                    lambda text: self._spoken(text, question.language, settings),
                )
                async for text, (speech, ms) in self._speaking:
                    tts_ms += ms
                    if first_audio_ms is None:
                        first_audio_ms = (time.perf_counter() - started) * 1000.0
                    sentence = SpokenSentence(index=len(self.spoken), text=text, speech=speech)
                    self.spoken.append(sentence)
                    yield sentence
            finished = True
        finally:
            await self._stop()
            if not finished:  # the client left or a stage failed: keep what was delivered
                self._remember_later()
        answer = self.delivered()
        if guarded.cut is not None:
            # The text stays out of the log (personal data): the reason and the size tell what happened.
            logger.warning(
                "reply cut by the guard: %s",
                guarded.cut.value,
                extra={
                    "request_id": self.request_id,
                    "stage": "llm",
                    "cut_reason": guarded.cut.value,
                    "sentences": len(self.spoken),
                },
            )
        await self._remember(answer)
        audio_s = sum(sentence.speech.duration_s for sentence in self.spoken)
        yield StreamDoneEvent(
            metadata=StreamMetadata(
                request_id=self.request_id,
                input_text=question.text,
                input_language=question.language,
                input_duration_s=round(self._audio.duration_s, 3) if self._audio is not None else 0.0,
                output_text=answer,
                output_duration_s=round(audio_s, 3),
                output_sample_rate=max((s.speech.sample_rate for s in self.spoken), default=0),
                stt_ms=round(stt_ms, 1),
                llm_ms=round(llm_timing.get("llm_ms", 0.0), 1),
                tts_ms=round(tts_ms, 1),
                total_ms=round((time.perf_counter() - started) * 1000.0, 1),
                time_to_first_audio_ms=round(first_audio_ms or 0.0, 1),
                sentences=len(self.spoken),
                cut_reason=guarded.cut.value if guarded.cut is not None else None,
                interrupted=self._interrupted,
            )
        )

    async def _spoken(self, text: str, language: str, settings: IngressSettings) -> tuple[SpeechAudio, float]:
        if not self._speak:
            return SpeechAudio(samples=np.zeros(0, dtype=np.float32), sample_rate=16_000, voice=""), 0.0
        started = time.perf_counter()
        speech, _ = await self._core.speak(text, language, self._voice(text), settings)
        return speech, self._tts_busy.add(started, time.perf_counter())

    async def _texts(
        self, sentences: asyncio.Queue[str | OrchestratorError | None], language: str
    ) -> AsyncIterator[str]:
        """The guarded sentences as the model writes them; the fallback reply when it wrote none."""
        given = False
        while (item := await sentences.get()) is not None:
            if isinstance(item, OrchestratorError):
                raise item
            given = True
            yield item
        if not given:
            logger.warning(
                "language model gave no speakable reply; using the fallback",
                extra={"request_id": self.request_id, "stage": "llm"},
            )
            yield fallback_reply(language)

    async def _stop(self) -> None:
        """Stop the model and the synthesis still pending (no-ops once they are done)."""
        if self._speaking is not None:
            await self._speaking.aclose()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _remember(self, answer: str) -> None:
        if self._remembered or self.question is None:
            return
        self._remembered = True
        await self._core.remember(self.session_id, self.question.text, answer)

    def _remember_later(self) -> None:
        """On a turn left half-way the caller is gone (or going): store what was delivered in a task of its
        own, which the caller's cancellation does not reach."""
        if self._remembered or self.question is None or self.session_id is None:
            return
        self._core.keep(asyncio.ensure_future(self._remember(self.delivered())))


def heard_text(spoken: Sequence[tuple[str, float]], played_ms: float | None, language: str) -> str:
    """What a listener heard of sentences (text, seconds of audio) played for `played_ms` (None: all):
    the whole sentences, then the first share of the one cut, by characters (Japanese, Chinese) or words."""
    left = None if played_ms is None else played_ms / 1000.0
    texts: list[str] = []
    for text, duration in spoken:
        if left is None or left >= duration:
            texts.append(text)
            left = None if left is None else left - duration
            continue
        if left > 0 and duration > 0:
            texts.append(_heard_part(text, left / duration, language))
        break
    return joined([text for text in texts if text], language)


def _heard_part(text: str, share: float, language: str) -> str:
    if language in ("ja", "zh"):
        return text[: round(len(text) * share)]
    words = text.split()
    return " ".join(words[: round(len(words) * share)])


class TurnCore:
    """The stages and the live settings every spoken turn uses; what each door composes."""

    def __init__(
        self,
        stt: SpeechToTextStage,
        llm: LanguageModelStage,
        tts: TextToSpeechStage,
        settings: Live[IngressSettings],
        conversations: ConversationStage | None = None,
    ) -> None:
        self._stt = stt
        self._llm = llm
        self._tts = tts
        self._conversations = conversations
        self._live = settings
        self._background: set[asyncio.Future[None]] = set()

    @property
    def settings(self) -> IngressSettings:
        return self._live.current

    # --- turns
    def answer(
        self,
        audio: DecodedAudio,
        language: str | None,
        *,
        request_id: str,
        session_id: str | None = None,
        voice: str | VoiceChoice | None = None,
        settings: IngressSettings | None = None,
    ) -> SpokenTurn:
        """A turn from decoded speech: hear it (in `language`, or detected), then reply and speak."""
        return SpokenTurn(
            self,
            request_id=request_id,
            session_id=session_id,
            voice=_voice_choice(voice),
            audio=audio,
            forced_language=normalize_language(language),
            settings=settings,
        )

    def reply(
        self,
        question: ReplyRequest,
        *,
        request_id: str,
        session_id: str | None = None,
        voice: str | VoiceChoice | None = None,
        speak: bool = True,
    ) -> SpokenTurn:
        """A turn from a question already in text (a transcript, a typed message, a chat's messages);
        `speak=False`: its sentences come as text only."""
        return SpokenTurn(
            self,
            request_id=request_id,
            session_id=session_id,
            voice=_voice_choice(voice),
            question=question,
            speak=speak,
        )

    def say(
        self, texts: list[str], language: str | None, voice: str | VoiceChoice | None = None
    ) -> Prefetched[tuple[SpeechAudio, float]]:
        """Text to speak, sentence by sentence, the next synthesised while this one is delivered."""
        choose, settings = _voice_choice(voice), self.settings

        async def given() -> AsyncIterator[str]:
            for text in texts:
                yield text

        return Prefetched(given(), lambda text: self.speak(text, language, choose(text), settings))

    async def stream(
        self,
        upload: bytes,
        language: str | None,
        request_id: str,
        session_id: str | None = None,
        voice: str | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """A turn from an uploaded recording: decoded and checked (its 400s before any event), then
        `answer`'s events."""
        settings = self.settings  # one snapshot for the decoding limits and the whole turn
        audio = await self.decode(upload, settings)
        turn = self.answer(
            audio, language, request_id=request_id, session_id=session_id, voice=voice, settings=settings
        )
        async for event in turn:
            yield event

    async def run(
        self,
        upload: bytes,
        language: str | None,
        request_id: str,
        session_id: str | None = None,
        voice: str | None = None,
    ) -> DialogueResult:
        """A whole spoken reply to an upload: its sentences joined into one recording."""
        return await whole_reply(self.stream(upload, language, request_id, session_id, voice))

    # --- one stage call each
    async def decode(self, upload: bytes, settings: IngressSettings | None = None) -> DecodedAudio:
        """Decode and check an upload (400s); CPU work on untrusted bytes, off the event loop."""
        settings = settings or self.settings
        limits = AudioLimits(settings.min_audio_seconds, settings.max_audio_seconds)
        return await asyncio.to_thread(decode_audio, upload, limits)

    async def hear(
        self,
        audio: DecodedAudio,
        language: str | None,
        task: SpeechTask = "transcribe",
        settings: IngressSettings | None = None,
    ) -> tuple[Transcription, float]:
        """The speech recognised (422 without any), in `language` or the one detected; and its time in ms."""
        forced = normalize_language(language)
        transcription, ms = await self.timed("stt", self._stt.transcribe(audio, forced, task), settings)
        heard = require_speech(transcription, audio)
        return heard.model_copy(update={"language": forced or transcription.language}), ms

    async def speak(
        self, text: str, language: str | None, voice: str | None, settings: IngressSettings | None = None
    ) -> tuple[SpeechAudio, float]:
        request = SynthesisRequest(text=text, language=speech_language(text, language), voice=voice)
        return await self.timed("tts", self._tts.synthesize(request), settings)

    async def call(
        self,
        stage: str,
        work: Awaitable[T],
        settings: IngressSettings | None = None,
        deadline: float | None = None,
    ) -> T:
        """One stage call within that stage's timeout (or by `deadline`, the event loop's time when a whole
        reply read delta by delta must be done); its failure as the stage's error (504 past the timeout,
        else its 503); the stage's own typed refusals (an unknown voice) pass through."""
        settings = settings or self.settings
        timeout = stage_timeouts(settings)[stage]
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                return await work
        except OrchestratorError:
            raise
        except Exception as error:
            raise stage_error(stage, error, timeout, settings.retry_after_seconds) from error

    async def timed(
        self, stage: str, work: Awaitable[T], settings: IngressSettings | None = None
    ) -> tuple[T, float]:
        started = time.perf_counter()
        result = await self.call(stage, work, settings)
        return result, (time.perf_counter() - started) * 1000.0

    async def write_reply(
        self,
        question: ReplyRequest,
        guarded: GuardedReply,
        sentences: asyncio.Queue[str | OrchestratorError | None],
        timing: dict[str, float],
        settings: IngressSettings,
    ) -> None:
        """Stream the model's reply into speakable sentences on the queue, the whole reply within the LLM
        timeout; end with None or the error. The guard stops pulling (and so the model) as soon as the reply
        degenerates or grows too long."""
        started = time.perf_counter()
        timeout = settings.llm_timeout_seconds
        soft_split = (settings.stream_soft_split_chars, settings.stream_first_chunk_chars)
        try:
            async with asyncio.timeout(timeout):
                async for sentence in guarded.sentences(self._llm.stream(question), *soft_split):
                    if speakable := clean_for_speech(sentence):
                        await sentences.put(speakable)
        except OrchestratorError as error:
            await sentences.put(error)
        except Exception as error:  # TimeoutError included: 504
            await sentences.put(stage_error("llm", error, timeout, settings.retry_after_seconds))
        else:
            timing["llm_ms"] = (time.perf_counter() - started) * 1000.0
            await sentences.put(None)

    # --- session memory
    async def history(self, session_id: str | None) -> list[Turn]:
        if session_id is None or self._conversations is None:
            return []
        try:
            return await self._conversations.history(session_id)
        except Exception as exc:  # memory is a nicety: answer without it rather than fail the dialogue
            logger.warning("conversation history unavailable: %r", exc, extra={"stage": "session"})
            return []

    async def remember(self, session_id: str | None, heard: str, answer: str) -> None:
        if session_id is None or self._conversations is None:
            return
        try:
            await self._conversations.remember(session_id, Turn(user=heard, assistant=answer))
        except Exception as exc:
            logger.warning("conversation turn not stored: %r", exc, extra={"stage": "session"})

    def keep(self, task: asyncio.Future[None]) -> None:
        """Hold a background task until it ends (the event loop keeps only weak references)."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _voice_choice(voice: str | VoiceChoice | None) -> VoiceChoice:
    if callable(voice):
        return voice
    return lambda _text: voice


async def whole_reply(events: AsyncIterable[TurnEvent]) -> DialogueResult:
    """A turn's sentences joined into one recording, with its done event's metadata."""
    speech: list[SpeechAudio] = []
    async for event in events:
        if isinstance(event, SpokenSentence):
            speech.append(event.speech)
        elif isinstance(event, StreamDoneEvent):
            return DialogueResult(metadata=event.metadata, speech=join_speech(speech))
    raise AssertionError("a turn always ends with its done event or an error")


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
