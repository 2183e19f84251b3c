"""One realtime response: a turn's answer made into the protocol's response events.

A `Feed` drains a turn's events into a queue from the moment it is made, so an answer can be under way
before anyone listens: that is how the answer to a speculative transcript is prepared during the user's
pause, and then either handed to a `ResponseRun` (the turn ended there) or discarded (speech resumed).

A `ResponseRun` sends `response.created`, the assistant item, then each sentence as a transcript delta and
audio deltas in the session's output format, and ends with the done events and `response.done` (completed,
cancelled or failed, with usage and our per-stage timings as metadata). `cancel()` stops it at once: the
model and pending synthesis stop through the turn's own handles, nothing more is sent, and the item keeps
what the listener heard — the client's `audio_end_ms` when it said, else the server's estimate (audio sent,
at most the time since the first delta went out).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from voice_orchestrator.audio import resample
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode, openai_error_type
from voice_orchestrator.protocol import SpokenSentence, StreamDoneEvent, TokenUsage
from voice_orchestrator.realtime.codecs import SAMPLE_RATES, AudioFormat, encode
from voice_orchestrator.realtime.protocol import event, message_item, new_id
from voice_orchestrator.turn import SpokenTurn, heard_text, joined

Send = Callable[[dict[str, Any]], Awaitable[None]]
Status = Literal["completed", "cancelled", "failed", "incomplete"]
# Audio deltas of at most this much speech each (24 kHz PCM16: 24 KB, 32 KB of base64).
DELTA_SECONDS = 0.5


class _Ended:
    pass


_END = _Ended()


class Feed:
    """A turn's events, drained into a queue by a task of its own from the start."""

    def __init__(self, turn: SpokenTurn) -> None:
        self.turn = turn
        self.started = time.perf_counter()
        self._events: asyncio.Queue[object] = asyncio.Queue()
        self._task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            async for item in self.turn:
                self._events.put_nowait(item)
        except Exception as error:  # handed to the consumer
            self._events.put_nowait(error)
        finally:
            self._events.put_nowait(_END)

    async def events(self) -> AsyncIterator[SpokenSentence | StreamDoneEvent]:
        while (item := await self._events.get()) is not _END:
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, SpokenSentence | StreamDoneEvent)
            yield item

    async def discard(self) -> None:
        """Thrown away unheard: the model and synthesis stop, nothing of it is kept."""
        self.turn.interrupt(0.0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task


@dataclass
class AssistantItem:
    """What the conversation keeps of an answer: its sentences with their audio length, and the text heard."""

    id: str
    language: str
    audio: bool
    sentences: list[tuple[str, float]] = field(default_factory=list)
    text: str = ""
    status: Literal["completed", "incomplete", "in_progress"] = "in_progress"

    @property
    def audio_ms(self) -> float:
        return sum(seconds for _, seconds in self.sentences) * 1000.0

    def truncate(self, played_ms: float) -> None:
        self.text = heard_text(self.sentences, played_ms, self.language)
        self.status = "incomplete"

    def describe(self) -> dict[str, Any]:
        return message_item(
            self.id,
            "assistant",
            text=None if self.audio else self.text,
            transcript=self.text if self.audio else None,
            audio=self.audio,
            status=self.status,
        )


class ResponseRun:
    def __init__(
        self,
        feed: Feed,
        send: Send,
        *,
        output: AudioFormat | None,
        language: str,
        conversation_id: str | None,
        metadata: dict[str, str] | None = None,
        speech_ended_at: float | None = None,
        usage: Callable[[str], Awaitable[TokenUsage]] | None = None,
    ) -> None:
        self.id = new_id("resp")
        self._count = usage
        self.usage: TokenUsage | None = None
        self.feed = feed
        self._send = send
        self._output = output  # None: text only
        self.item = AssistantItem(new_id("item"), language, audio=output is not None)
        self._conversation_id = conversation_id
        self._metadata = dict(metadata or {})
        self.speech_ended_at = speech_ended_at
        self.status: Status = "completed"
        self.reason: str | None = None
        self.error: OrchestratorError | None = None
        self.first_audio_at: float | None = None
        self.sent_ms = 0.0  # audio sent so far (a sentence cut half-way counts what went out)
        self.done_event: StreamDoneEvent | None = None
        self._cut = False
        self._played_ms: float | None = None
        self.finished = asyncio.Event()

    # --- the client's view of time
    def estimated_played_ms(self, now: float | None = None) -> float:
        """How much the listener can have heard: the audio sent, at most the time since the first delta."""
        if self.first_audio_at is None:
            return 0.0
        elapsed = ((now or time.perf_counter()) - self.first_audio_at) * 1000.0
        return min(self.sent_ms, max(0.0, elapsed))

    def playing(self) -> bool:
        """Still producing, or (by the estimate) still being played."""
        return not self.finished.is_set() or self.estimated_played_ms() < self.sent_ms

    def cancel(self, reason: str, played_ms: float | None = None) -> None:
        """Stop now: nothing more is sent; the item keeps `played_ms` of speech (None: the estimate)."""
        if self.finished.is_set() or self._cut:
            return
        self._cut = True
        self.status, self.reason = "cancelled", reason
        self._played_ms = self.estimated_played_ms() if played_ms is None else played_ms
        self.feed.turn.interrupt(self._played_ms)

    # --- the events
    def _fields(self) -> dict[str, Any]:
        return {"response_id": self.id, "item_id": self.item.id, "output_index": 0, "content_index": 0}

    def describe(self, status: str) -> dict[str, Any]:
        details: dict[str, Any] | None = None
        if status == "cancelled":
            details = {"type": "cancelled", "reason": self.reason}
        elif status == "failed" and self.error is not None:
            details = {
                "type": "failed",
                "error": {
                    "type": openai_error_type(self.error.http_status),
                    "code": self.error.code.value,
                    "message": self.error.message,
                },
            }
        return {
            "object": "realtime.response",
            "id": self.id,
            "status": status,
            "status_details": details,
            "output": [] if status == "in_progress" else [self.item.describe()],
            "conversation_id": self._conversation_id,
            "output_modalities": ["audio"] if self._output else ["text"],
            "audio": {"output": {"format": {"type": self._output}}} if self._output else None,
            "metadata": self._metadata or None,
            "usage": self._usage() if status != "in_progress" else None,
        }

    def _usage(self) -> dict[str, Any] | None:
        # The model's own count (its tokenizer), or none: a guess from characters would be invented.
        if self.usage is None:
            return None
        return {
            "total_tokens": self.usage.total_tokens,
            "input_tokens": self.usage.prompt_tokens,
            "output_tokens": self.usage.completion_tokens,
            "input_token_details": {"text_tokens": self.usage.prompt_tokens, "audio_tokens": 0},
            "output_token_details": {"text_tokens": self.usage.completion_tokens, "audio_tokens": 0},
        }

    async def run(self) -> None:
        send, fields = self._send, self._fields()
        audio = self._output is not None
        try:
            await send(event("response.created", response=self.describe("in_progress")))
            await send(
                event(
                    "response.output_item.added",
                    response_id=self.id,
                    output_index=0,
                    item=self.item.describe(),
                )
            )
            await send(event("conversation.item.added", item=self.item.describe()))
            part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
            await send(event("response.content_part.added", **fields, part=part))
            try:
                async for item in self.feed.events():
                    if isinstance(item, StreamDoneEvent):
                        self.done_event = item
                    elif not self._cut:
                        await self._sentence(item)
            except OrchestratorError as error:
                self.status, self.error = "failed", error
            except Exception:
                self.status = "failed"
                self.error = OrchestratorError(OrchestratorErrorCode.INTERNAL_ERROR, "The response failed.")
            await self._finish()
        finally:
            self.finished.set()

    async def _sentence(self, sentence: SpokenSentence) -> None:
        fields, language = self._fields(), self.item.language
        spoken = sentence.text if not self.item.sentences or language in ("ja", "zh") else f" {sentence.text}"
        if self._output is None:
            await self._send(event("response.output_text.delta", **fields, delta=spoken))
            self.item.sentences.append((sentence.text, 0.0))
            return
        await self._send(event("response.output_audio_transcript.delta", **fields, delta=spoken))
        rate = SAMPLE_RATES[self._output]
        samples = resample(sentence.speech.samples, sentence.speech.sample_rate, rate).astype(np.float32)
        # The item holds the sentence from its first delta on: a listener may play into it before a cut.
        self.item.sentences.append((sentence.text, len(samples) / rate))
        step = int(rate * DELTA_SECONDS)
        for start in range(0, len(samples), step):
            if self._cut:
                return
            piece = samples[start : start + step]
            data = base64.b64encode(encode(piece, self._output)).decode("ascii")
            await self._send(event("response.output_audio.delta", **fields, delta=data))
            self.sent_ms += len(piece) * 1000.0 / rate
            if self.first_audio_at is None:
                self.first_audio_at = time.perf_counter()

    async def _finish(self) -> None:
        fields, item = self._fields(), self.item
        if self._cut and self._played_ms is not None and self._played_ms < item.audio_ms:
            item.truncate(self._played_ms)
        else:
            item.text = joined([text for text, _ in item.sentences], item.language)
        item.status = "completed" if self.status == "completed" else "incomplete"
        if self.done_event is not None:
            self._metadata.update(timings(self.done_event))
        if self._count is not None and self.status == "completed":
            with contextlib.suppress(Exception):  # usage is a nicety: the answer was given
                self.usage = await self._count(self.feed.turn.model_text)
        if self.speech_ended_at is not None and self.first_audio_at is not None:
            waited = (self.first_audio_at - self.speech_ended_at) * 1000.0
            self._metadata["end_of_speech_to_first_audio_ms"] = f"{max(0.0, waited):.1f}"
        if self._output is not None:
            await self._send(event("response.output_audio.done", **fields))
            await self._send(event("response.output_audio_transcript.done", **fields, transcript=item.text))
            part: dict[str, Any] = {"type": "audio", "transcript": item.text}
        else:
            await self._send(event("response.output_text.done", **fields, text=item.text))
            part = {"type": "text", "text": item.text}
        await self._send(event("response.content_part.done", **fields, part=part))
        await self._send(
            event("response.output_item.done", response_id=self.id, output_index=0, item=item.describe())
        )
        await self._send(event("conversation.item.done", item=item.describe()))
        await self._send(event("response.done", response=self.describe(self.status)))


def timings(done: StreamDoneEvent) -> dict[str, str]:
    """The turn's per-stage timings as response metadata (strings: OpenAI's metadata is string-valued)."""
    meta = done.metadata
    return {
        "request_id": meta.request_id,
        "llm_ms": f"{meta.llm_ms:.1f}",
        "tts_ms": f"{meta.tts_ms:.1f}",
        "turn_ms": f"{meta.total_ms:.1f}",
        "time_to_first_audio_ms": f"{meta.time_to_first_audio_ms:.1f}",
        "sentences": str(meta.sentences),
        **({"cut_reason": meta.cut_reason} if meta.cut_reason else {}),
    }
