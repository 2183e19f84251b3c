"""One realtime conversation: the client's events in, the server's events out, over the one turn core.

Per connection it holds the session configuration, the input audio (resampled to 16 kHz on arrival), a
server VAD, the conversation's items and at most one response in flight. It never touches a socket: events
go out through `send`, so the whole state machine is unit-tested with the fake stages.

Turn-taking with server VAD:
- `speech_started`: a response still producing or (by the server's estimate) still playing is cut when the
  session allows it (`interrupt_response`): barge-in;
- the user pauses: after `preemptive_delay_ms` the speech so far is transcribed and the answer to it starts
  (model, then the first sentence's synthesis), held back from the client;
- speech resumes: that speculative answer is discarded through its own handles (nothing reaches the client
  or the memory);
- the pause lasts `silence_duration_ms`: the turn is committed; its transcript is the speculative one (no
  speech came after it) and the answer already under way becomes the response.
No Ray, no socket: the stages arrive through `TurnCore`, admission through `admit`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from voice_orchestrator.api.gate import Admission
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.metrics import (
    REALTIME_BARGE_INS,
    REALTIME_FIRST_AUDIO,
    REALTIME_PREEMPTIVE,
    REALTIME_RESPONSES,
    Meter,
    language_tag,
)
from voice_orchestrator.protocol import (
    ChatMessage,
    DecodedAudio,
    ReplyRequest,
    TokenUsage,
    Transcription,
    Turn,
)
from voice_orchestrator.realtime.codecs import InputDecoder, StreamResampler
from voice_orchestrator.realtime.protocol import (
    AppendAudio,
    DeleteItem,
    ResponseOptions,
    SessionConfig,
    TruncateItem,
    error_event,
    event,
    invalid,
    message_item,
    new_id,
    updated_session,
    user_text,
    validation_error,
)
from voice_orchestrator.realtime.responses import AssistantItem, Feed, ResponseRun
from voice_orchestrator.realtime.vad import SAMPLE_RATE, TurnDetector, VadConfig, VadEvent
from voice_orchestrator.text import WHISPER_LANGUAGES, is_japanese
from voice_orchestrator.turn import TurnCore, VoiceChoice, joined

logger = logging.getLogger("voice_orchestrator.realtime")

Send = Callable[[dict[str, Any]], Awaitable[None]]
VoicePicker = Callable[[str], Awaitable[VoiceChoice]]
Usage = Callable[[ReplyRequest, str], Awaitable[TokenUsage]]
# The committed speech runs this far past where the silence began (the last syllable's tail).
TAIL_MS = 150
MIN_COMMIT_MS = 100  # OpenAI refuses to commit less


class SessionClosed(Exception):
    """Raised by `send` once the client is gone: whatever was sending stops."""


@dataclass
class UserItem:
    id: str
    audio: bool
    text: str | None = None
    language: str | None = None
    heard: asyncio.Task[None] | None = None  # the transcription of a committed turn, while it runs

    def describe(self) -> dict[str, Any]:
        if self.audio:
            return message_item(self.id, "user", transcript=self.text, audio=True)
        return message_item(self.id, "user", text=self.text)


Item = UserItem | AssistantItem


@dataclass
class Prepared:
    """What was made during a pause: the transcript, and the answer to it when the session answers."""

    transcription: Transcription
    feed: Feed | None = None
    admission: Admission | None = None


@dataclass
class Speculation:
    pause_ms: int
    task: asyncio.Task[Prepared | None]
    used: bool = False


@dataclass
class SessionLimits:
    max_audio_seconds: float
    max_input_chars: int
    max_tokens: int
    preemptive: bool = True
    preemptive_delay_ms: int = 200


@dataclass
class _Buffer:
    """The uncommitted input audio at 16 kHz, and where its first sample sits in the stream."""

    start: int = 0  # in samples since the session began
    chunks: list[np.ndarray] = field(default_factory=list)
    size: int = 0

    def add(self, samples: np.ndarray) -> None:
        self.chunks.append(samples)
        self.size += samples.size

    @property
    def end(self) -> int:
        return self.start + self.size

    def between(self, start: int, end: int) -> np.ndarray:
        whole = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        return whole[max(0, start - self.start) : max(0, end - self.start)]

    def keep_from(self, start: int) -> None:
        if start <= self.start:
            return
        kept = self.between(start, self.end)
        self.start, self.chunks, self.size = self.end - kept.size, [kept] if kept.size else [], kept.size


class RealtimeSession:
    def __init__(
        self,
        core: TurnCore,
        send: Send,
        *,
        session_id: str,
        limits: SessionLimits,
        admit: Callable[[], Admission],
        voices: VoicePicker,
        meter: Meter,
        usage: Usage | None = None,
        memory_id: str | None = None,
        detector: Callable[[VadConfig], TurnDetector] = TurnDetector,
    ) -> None:
        self.id = session_id
        self._core = core
        self._send = send
        self.limits = limits
        self._admit = admit
        self._voices = voices
        self._meter = meter
        self._usage = usage
        self._memory_id = memory_id
        self.config = SessionConfig()
        self._decoder = InputDecoder(self.config.input_format)
        self._resampler = StreamResampler(self._decoder.sample_rate, SAMPLE_RATE)
        self._new_detector = detector
        self._vad: TurnDetector | None = None
        self._buffer = _Buffer()
        self._speech_item: str | None = None
        self._speech_start = 0
        self._speculation: Speculation | None = None
        self.items: list[Item] = []
        self._past: list[Turn] = []  # a named session's earlier turns
        # Answers not yet stored in a named session: kept until the next answer starts (or the socket closes),
        # so a truncation that comes after the answer (the client's played time) is what gets stored.
        self._unsaved: list[tuple[str, AssistantItem]] = []
        self.response: ResponseRun | None = None
        self._turns = asyncio.Lock()  # one response at a time, in order
        self._tasks: set[asyncio.Task[Any]] = set()
        self._too_long_said = False
        # Bumped when the user starts speaking with interrupt_response on: an answer to an earlier turn that
        # has not started yet is dropped, as one under way is cut (the next answer covers both turns).
        self._epoch = 0
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._item_truncate,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "output_audio_buffer.clear": self._output_clear,
        }

    # --- life
    async def start(self) -> None:
        if self._memory_id is not None:
            self._past = await self._core.history(self._memory_id)
        self._apply_detection()
        await self._send(event("session.created", session=self.config.describe(self.id)))

    async def close(self) -> None:
        """The client left (or the session ended): every task stops, every slot is given back, and a named
        session keeps the answers as they were heard."""
        await self._drop_speculation()
        if self.response is not None:
            self.response.cancel("client_cancelled", self.response.estimated_played_ms())
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._save()

    async def _save(self) -> None:
        unsaved, self._unsaved = self._unsaved, []
        for question, answer in unsaved:
            await self._core.remember(self._memory_id, question, answer.text)

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        return task

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or isinstance(task.exception(), SessionClosed | None):
            return
        logger.error("realtime session task failed", exc_info=task.exception(), extra={"session": self.id})

    # --- client events
    async def handle(self, message: str | bytes) -> None:
        """One client message; what is wrong with it is an `error` event, and the session goes on."""
        client_event_id: str | None = None
        try:
            if isinstance(message, bytes):
                raise invalid("Binary frames are not part of the protocol: send JSON text events.")
            try:
                data = json.loads(message)
            except ValueError:
                raise invalid("The message is not valid JSON.") from None
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                raise invalid("An event is a JSON object with a string 'type'.", "type")
            if isinstance(data.get("event_id"), str):
                client_event_id = data["event_id"][:128]
            handler = self._handlers.get(data["type"])
            if handler is None:
                raise invalid(
                    f"Unknown or unsupported event type {data['type'][:64]!r}; see the README (realtime).",
                    "type",
                )
            await handler(data)
        except OrchestratorError as error:
            await self._send(error_event(error, client_event_id))
        except ValidationError as error:
            await self._send(error_event(validation_error(error, "event"), client_event_id))

    async def _session_update(self, data: dict[str, Any]) -> None:
        config = updated_session(self.config, data.get("session"), WHISPER_LANGUAGES)
        if config.voice != self.config.voice:
            await self._voices(config.voice)  # an unknown voice is refused now, not at the first answer
        if config.input_format != self.config.input_format:
            self._decoder = InputDecoder(config.input_format)
            self._resampler = StreamResampler(self._decoder.sample_rate, SAMPLE_RATE)
        detection_changed = config.turn_detection != self.config.turn_detection
        self.config = config
        if detection_changed:
            self._apply_detection()
        await self._send(event("session.updated", session=self.config.describe(self.id)))

    def _apply_detection(self) -> None:
        detection = self.config.turn_detection
        if detection is None:
            self._vad = None
            return
        settings = VadConfig(
            threshold=max(detection.threshold, 0.01),
            prefix_padding_ms=detection.prefix_padding_ms,
            silence_duration_ms=detection.silence_duration_ms,
        )
        if self._vad is None:
            self._vad = self._new_detector(settings)
        else:
            self._vad.reconfigure(settings)

    async def _append(self, data: dict[str, Any]) -> None:
        chunk = AppendAudio.model_validate(data)
        try:
            raw = base64.b64decode(chunk.audio, validate=True)
        except (binascii.Error, ValueError):
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_AUDIO_FORMAT, "audio is not base64.", details={"field": "audio"}
            ) from None
        samples = self._resampler.feed(self._decoder.feed(raw))
        if samples.size:
            await self._hear(samples)

    async def _hear(self, samples: np.ndarray) -> None:
        self._buffer.add(samples)
        vad = self._vad
        if vad is not None:
            for happened in vad.feed(samples):
                await self._on_vad(happened)
            if not vad.in_speech:  # keep only what may become prefix padding
                self._buffer.keep_from(self._buffer.end - self._ms(self._padding_ms() + 100))
        if self._buffer.size > self.limits.max_audio_seconds * SAMPLE_RATE:
            if vad is not None and vad.in_speech:
                # Speech that never pauses: the turn ends at the limit, as if the user stopped there.
                vad.reset()
                end_ms = self._buffer.end * 1000 // SAMPLE_RATE
                stopped = event(
                    "input_audio_buffer.speech_stopped", audio_end_ms=end_ms, item_id=self._speech_item
                )
                await self._send(stopped)
                await self._end_turn(self._buffer.end)
                return
            if not self._too_long_said:
                self._too_long_said = True
                await self._send(error_event(self._too_long()))
            self._buffer.keep_from(self._buffer.end - int(self.limits.max_audio_seconds * SAMPLE_RATE))

    def _too_long(self) -> OrchestratorError:
        return OrchestratorError(
            OrchestratorErrorCode.AUDIO_TOO_LONG,
            f"The input audio buffer holds more than {self.limits.max_audio_seconds:g} s; commit or clear "
            "it. Older audio is dropped.",
            details={"max_audio_seconds": self.limits.max_audio_seconds},
        )

    async def _commit(self, data: dict[str, Any]) -> None:
        end = self._buffer.end
        start = self._speech_start if (self._vad is not None and self._vad.in_speech) else self._buffer.start
        if end - start < self._ms(MIN_COMMIT_MS):
            raise invalid(
                f"The input audio buffer holds less than {MIN_COMMIT_MS} ms of audio; nothing to commit.",
                "input_audio_buffer",
            )
        if self._vad is not None:
            self._vad.reset()
        await self._drop_speculation()
        await self._commit_audio(start, end, respond=False, speech_ended_at=None)

    async def _clear(self, data: dict[str, Any]) -> None:
        await self._drop_speculation()
        self._buffer.keep_from(self._buffer.end)
        self._decoder.reset()
        self._too_long_said = False
        if self._vad is not None:
            self._vad.reset()
        self._speech_item = None
        await self._send(event("input_audio_buffer.cleared"))

    async def _item_create(self, data: dict[str, Any]) -> None:
        item = data.get("item")
        text = user_text(item, self.limits.max_input_chars)
        assert isinstance(item, dict)
        role = item.get("role")
        item_id = item.get("id") if isinstance(item.get("id"), str) and 0 < len(item["id"]) <= 64 else None
        item_id = item_id or new_id("item")
        if any(existing.id == item_id for existing in self.items):
            raise invalid(f"An item with id {item_id!r} exists already.", "item.id")
        previous = self.items[-1].id if self.items else None
        if role == "system":
            self.config = self.config.model_copy(
                update={"instructions": f"{self.config.instructions}\n{text}".strip()}
            )
            described = message_item(item_id, "system", text=text)
        elif role == "assistant":
            assistant = AssistantItem(item_id, "ja" if is_japanese(text) else "en", audio=False, text=text)
            assistant.sentences.append((text, 0.0))
            assistant.status = "completed"
            self.items.append(assistant)
            described = assistant.describe()
        else:
            user = UserItem(item_id, audio=False, text=text, language=self._text_language(text))
            self.items.append(user)
            described = user.describe()
        await self._send(event("conversation.item.added", previous_item_id=previous, item=described))
        await self._send(event("conversation.item.done", previous_item_id=previous, item=described))

    async def _item_truncate(self, data: dict[str, Any]) -> None:
        cut = TruncateItem.model_validate(data)
        item = self._item(cut.item_id)
        if not isinstance(item, AssistantItem) or not item.audio:
            raise invalid("Only an assistant item with audio can be truncated.", "item_id")
        if cut.audio_end_ms > item.audio_ms + 1:
            raise invalid(
                f"audio_end_ms {cut.audio_end_ms} is past the item's {item.audio_ms:.0f} ms of audio.",
                "audio_end_ms",
            )
        if self.response is not None and self.response.item is item and not self.response.finished.is_set():
            self.response.cancel("client_cancelled", float(cut.audio_end_ms))
            await self.response.finished.wait()
        item.truncate(float(cut.audio_end_ms))
        await self._send(
            event(
                "conversation.item.truncated", item_id=item.id, content_index=0, audio_end_ms=cut.audio_end_ms
            )
        )

    async def _item_delete(self, data: dict[str, Any]) -> None:
        item = self._item(DeleteItem.model_validate(data).item_id)
        if self.response is not None and self.response.item is item and not self.response.finished.is_set():
            raise invalid("The item is still being produced; cancel the response first.", "item_id")
        self.items.remove(item)
        await self._send(event("conversation.item.deleted", item_id=item.id))

    async def _item_retrieve(self, data: dict[str, Any]) -> None:
        item = self._item(DeleteItem.model_validate(data).item_id)
        await self._send(event("conversation.item.retrieved", item=item.describe()))

    def _item(self, item_id: str) -> Item:
        for item in self.items:
            if item.id == item_id:
                return item
        raise invalid(f"No item {item_id[:64]!r} in this conversation.", "item_id")

    async def _response_create(self, data: dict[str, Any]) -> None:
        options = ResponseOptions.model_validate(data.get("response") or {})
        if self.response is not None and not self.response.finished.is_set():
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST,
                "A response is already in progress; wait for response.done or send response.cancel.",
                details={"field": "type", "openai_code": "conversation_already_has_active_response"},
            )
        if not any(isinstance(item, UserItem) for item in self.items):
            raise invalid(
                "There is no user message to answer: add one, or speak, before response.create.", "type"
            )
        self._spawn(self._respond(options, speculation=None, speech_ended_at=None))

    async def _response_cancel(self, data: dict[str, Any]) -> None:
        if self.response is None or self.response.finished.is_set():
            raise invalid("There is no response in progress to cancel.", "type")
        self.response.cancel("client_cancelled")
        await self.response.finished.wait()

    async def _output_clear(self, data: dict[str, Any]) -> None:
        raise invalid(
            "output_audio_buffer.clear is for WebRTC; on a WebSocket the client stops its own playback and "
            "sends conversation.item.truncate.",
            "type",
        )

    # --- server VAD
    async def _on_vad(self, happened: VadEvent) -> None:
        detection = self.config.turn_detection
        assert detection is not None
        if happened.kind == "speech_started":
            await self._drop_speculation()
            self._speech_item = new_id("item")
            self._speech_start = max(
                self._buffer.start, self._ms(happened.at_ms - detection.prefix_padding_ms)
            )
            await self._send(
                event(
                    "input_audio_buffer.speech_started",
                    audio_start_ms=self._speech_start * 1000 // SAMPLE_RATE,
                    item_id=self._speech_item,
                )
            )
            if detection.interrupt_response:  # the client stops playing on speech_started; we stop making
                self._epoch += 1
                await self._barge_in()
        elif happened.kind == "pause":
            if self.limits.preemptive:
                task = self._spawn(self._speculate(happened.at_ms, detection.create_response))
                self._speculation = Speculation(happened.at_ms, task)
        elif happened.kind == "resumed":
            await self._drop_speculation()
        elif happened.kind == "speech_stopped":
            await self._send(
                event(
                    "input_audio_buffer.speech_stopped",
                    audio_end_ms=happened.at_ms,
                    item_id=self._speech_item,
                )
            )
            await self._end_turn(self._ms(happened.at_ms))

    async def _end_turn(self, end: int) -> None:
        behind_s = (self._buffer.end - end) / SAMPLE_RATE  # the silence that ended the turn, streamed since
        detection = self.config.turn_detection
        respond = detection is not None and detection.create_response
        await self._commit_audio(
            self._speech_start,
            min(self._buffer.end, end + self._ms(TAIL_MS)),
            respond=respond,
            speech_ended_at=time.perf_counter() - behind_s,
        )

    async def _barge_in(self) -> None:
        response = self.response
        if response is None or not response.playing():
            return
        self._meter.record(REALTIME_BARGE_INS, 1.0)
        if not response.finished.is_set():
            response.cancel("turn_detected")
            await response.finished.wait()
            return
        # Produced already, still playing by the estimate: keep what the listener had heard.
        played = response.estimated_played_ms()
        response.item.truncate(played)
        await self._send(
            event(
                "conversation.item.truncated",
                item_id=response.item.id,
                content_index=0,
                audio_end_ms=int(played),
            )
        )

    async def _speculate(self, pause_ms: int, answer: bool) -> Prepared | None:
        """During the pause: the speech so far transcribed, and (when the session answers) the answer to it
        started. None when there is nothing to say or no dialogue slot free."""
        await asyncio.sleep(self.limits.preemptive_delay_ms / 1000.0)
        audio = self._buffer.between(self._speech_start, self._ms(pause_ms + TAIL_MS))
        admission: Admission | None = None
        if answer:
            try:
                admission = self._admit()
            except OrchestratorError:
                return None  # full: the turn is answered the usual way when it ends
        try:
            transcription, _ = await self._core.hear(self._decoded(audio), self.config.language)
            prepared = Prepared(transcription, admission=admission)
            if answer:
                question = self._question(extra=(transcription.text, transcription.language))
                prepared.feed = await self._feed(question, ResponseOptions())
            return prepared
        except BaseException:
            if admission is not None:
                admission.release()
            raise

    async def _drop_speculation(self) -> None:
        speculation, self._speculation = self._speculation, None
        if speculation is None or speculation.used:
            return
        speculation.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            prepared = await speculation.task
            if prepared is not None:
                if prepared.feed is not None:
                    await prepared.feed.discard()
                    self._meter.record(REALTIME_PREEMPTIVE, 1.0, {"outcome": "discarded"})
                if prepared.admission is not None:
                    prepared.admission.release()

    # --- committed turns
    async def _commit_audio(
        self, start: int, end: int, *, respond: bool, speech_ended_at: float | None
    ) -> None:
        audio = self._buffer.between(start, end)
        self._buffer.keep_from(end)
        self._too_long_said = False
        item = UserItem(self._speech_item or new_id("item"), audio=True)
        self._speech_item = None
        speculation, self._speculation = self._speculation, None
        if speculation is not None:
            speculation.used = True
        previous = self.items[-1].id if self.items else None
        self.items.append(item)
        await self._send(event("input_audio_buffer.committed", previous_item_id=previous, item_id=item.id))
        await self._send(event("conversation.item.added", previous_item_id=previous, item=item.describe()))
        item.heard = self._spawn(self._transcribe(item, audio, speculation))
        if respond:
            self._spawn(self._respond(ResponseOptions(), speculation, speech_ended_at, self._epoch))

    async def _transcribe(self, item: UserItem, audio: np.ndarray, speculation: Speculation | None) -> None:
        prepared = None
        if speculation is not None:
            with contextlib.suppress(Exception):
                prepared = await speculation.task
        try:
            if prepared is not None:
                transcription = prepared.transcription
            else:
                transcription, _ = await self._core.hear(self._decoded(audio), self.config.language)
        except OrchestratorError as error:
            await self._send(
                event(
                    "conversation.item.input_audio_transcription.failed",
                    item_id=item.id,
                    content_index=0,
                    error={
                        "type": "invalid_request_error",
                        "code": error.code.value,
                        "message": error.message,
                    },
                )
            )
            return
        item.text, item.language = transcription.text, transcription.language
        fields = {"item_id": item.id, "content_index": 0}
        await self._send(
            event("conversation.item.input_audio_transcription.delta", **fields, delta=item.text)
        )
        await self._send(
            event(
                "conversation.item.input_audio_transcription.completed",
                **fields,
                transcript=item.text,
                usage={"type": "duration", "seconds": round(audio.size / SAMPLE_RATE, 3)},
            )
        )
        await self._send(event("conversation.item.done", item=item.describe()))

    # --- responses
    async def _respond(
        self,
        options: ResponseOptions,
        speculation: Speculation | None,
        speech_ended_at: float | None,
        epoch: int | None = None,
    ) -> None:
        async with self._turns:
            prepared: Prepared | None = None
            if speculation is not None:
                with contextlib.suppress(Exception):
                    prepared = await speculation.task
            try:
                await self._run_response(options, prepared, speech_ended_at, epoch)
            except OrchestratorError as error:
                await self._send(error_event(error))
            finally:
                if prepared is not None and prepared.admission is not None:
                    prepared.admission.release()

    async def _run_response(
        self,
        options: ResponseOptions,
        prepared: Prepared | None,
        speech_ended_at: float | None,
        epoch: int | None,
    ) -> None:
        for item in self.items:  # the transcripts the answer depends on
            if isinstance(item, UserItem) and item.heard is not None:
                await asyncio.shield(item.heard)
        # No answer when the turn had no words after all (a cough: OpenAI's server does the same), or when the
        # user spoke again before it started.
        unwanted = speech_ended_at is not None and not self._last_user_heard()
        if unwanted or (epoch is not None and epoch != self._epoch):
            if prepared is not None and prepared.feed is not None:
                await prepared.feed.discard()
                self._meter.record(REALTIME_PREEMPTIVE, 1.0, {"outcome": "discarded"})
            return
        await self._save()
        question = self._question()
        admission: Admission | None = None
        if prepared is not None and prepared.feed is not None:
            feed = prepared.feed
            self._meter.record(REALTIME_PREEMPTIVE, 1.0, {"outcome": "used"})
        else:
            admission = self._admit()
            feed = await self._feed(question, options)
        modalities = options.output_modalities or options.modalities or self.config.output_modalities
        in_conversation = options.conversation != "none"
        run = ResponseRun(
            feed,
            self._send,
            output=self.config.output_format if "audio" in modalities else None,
            language=question.language,
            conversation_id=self.id if in_conversation else None,
            metadata=options.metadata,
            speech_ended_at=speech_ended_at,
            usage=self._counter(question),
        )
        self.response = run
        if in_conversation:
            self.items.append(run.item)
        try:
            await run.run()
        finally:
            if admission is not None:
                admission.release()
        self._record(run, question.language)
        if run.status == "failed" and not run.item.text and run.item in self.items:
            self.items.remove(run.item)  # nothing was said: the question is still open
        if in_conversation and self._memory_id is not None and run.item in self.items:
            self._unsaved.append((question.text, run.item))

    def _counter(self, question: ReplyRequest) -> Callable[[str], Awaitable[TokenUsage]] | None:
        count = self._usage
        if count is None:
            return None
        return lambda text: count(question, text)

    def _record(self, run: ResponseRun, language: str) -> None:
        self._meter.record(REALTIME_RESPONSES, 1.0, {"status": run.status, "reason": run.reason or ""})
        if run.speech_ended_at is not None and run.first_audio_at is not None:
            waited = max(0.0, (run.first_audio_at - run.speech_ended_at) * 1000.0)
            self._meter.record(REALTIME_FIRST_AUDIO, waited, {"language": language_tag(language)})

    async def _feed(self, question: ReplyRequest, options: ResponseOptions) -> Feed:
        modalities = options.output_modalities or options.modalities or self.config.output_modalities
        choice = await self._voices(self.config.voice)
        instructions = options.instructions if options.instructions is not None else self.config.instructions
        if instructions:
            messages = [ChatMessage(role="system", content=instructions)]
            for turn in question.history:
                messages += [
                    ChatMessage(role="user", content=turn.user),
                    ChatMessage(role="assistant", content=turn.assistant),
                ]
            messages.append(ChatMessage(role="user", content=question.text))
            question = question.model_copy(update={"messages": messages})
        tokens = (
            options.max_output_tokens
            if isinstance(options.max_output_tokens, int)
            else self.config.max_output_tokens
        )
        if tokens is not None:
            question = question.model_copy(update={"max_tokens": min(tokens, self.limits.max_tokens)})
        spoken = self._core.reply(
            question, request_id=new_id("req"), voice=choice, speak="audio" in modalities
        )
        return Feed(spoken)

    def _last_user_heard(self) -> bool:
        users = [item for item in self.items if isinstance(item, UserItem)]
        return bool(users) and bool(users[-1].text)

    def _question(self, extra: tuple[str, str] | None = None) -> ReplyRequest:
        """The conversation as a question (the user's words since the last answer) and its history."""
        history = list(self._past)
        asked: list[str] = []
        language: str | None = None
        for item in self.items:
            if isinstance(item, UserItem):
                if item.text:
                    asked.append(item.text)
                    language = item.language or language
            elif asked and item.text:  # an answer cut before a word was heard leaves the question open
                history.append(Turn(user=joined(asked, language or "en"), assistant=item.text))
                asked = []
        if extra is not None:
            asked.append(extra[0])
            language = extra[1]
        if not asked and len(history) > len(self._past):
            # Nothing new since the last answer: answer the last question again (a client asking twice).
            last = history.pop()
            asked, language = [last.user], self._text_language(last.user)
        if not asked:
            raise invalid(
                "There is no user message to answer: add one, or speak, before response.create.", "type"
            )
        language = language or "en"
        return ReplyRequest(text=joined(asked, language), language=language, history=history)

    def _decoded(self, audio: np.ndarray) -> DecodedAudio:
        rate = self._decoder.sample_rate
        fmt = self.config.input_format
        return DecodedAudio(samples=audio, source_format=fmt, source_sample_rate=rate, source_channels=1)

    def _text_language(self, text: str) -> str:
        return "ja" if is_japanese(text) else (self.config.language or "en")

    def _padding_ms(self) -> int:
        detection = self.config.turn_detection
        return detection.prefix_padding_ms if detection is not None else 0

    @staticmethod
    def _ms(ms: float) -> int:
        """Milliseconds as a count of 16 kHz samples."""
        return int(ms * SAMPLE_RATE / 1000)
