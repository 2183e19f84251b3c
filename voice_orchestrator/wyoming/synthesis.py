"""Speech sent as Wyoming audio events.

`synthesize`: the text's sentences, each synthesised while the one before is sent, as one utterance (one
audio-start at the first voice's rate, chunks, one audio-stop). A streamed synthesis (synthesize-start,
-chunk*, -stop: Home Assistant speaking a language model's answer as it is written) becomes sentences as the
text arrives, each sent as its own audio-start/chunks/audio-stop as soon as it is made, then
synthesize-stopped — what Home Assistant's Wyoming client and wyoming-piper do.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event

from voice_orchestrator.api.gate import Admission
from voice_orchestrator.audio import resample
from voice_orchestrator.errors import invalid_request
from voice_orchestrator.protocol import SpeechAudio
from voice_orchestrator.realtime.codecs import to_pcm16
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.text import clean_for_speech
from voice_orchestrator.turn import Prefetched

SAMPLES_PER_CHUNK = 1024  # what wyoming-piper sends
WIDTH, CHANNELS = 2, 1
Send = Callable[[Event], Awaitable[None]]
Speak = Callable[[str], Awaitable[tuple[SpeechAudio, float]]]


def audio_events(speech: SpeechAudio, rate: int) -> list[Event]:
    """The speech at `rate` as PCM16 audio-chunk events."""
    pcm = to_pcm16(resample(speech.samples, speech.sample_rate, rate)).tobytes()
    step = SAMPLES_PER_CHUNK * WIDTH * CHANNELS
    return [
        AudioChunk(rate=rate, width=WIDTH, channels=CHANNELS, audio=pcm[offset : offset + step]).event()
        for offset in range(0, len(pcm), step)
    ]


async def send_utterance(send: Send, spoken: Prefetched[tuple[SpeechAudio, float]]) -> None:
    """All the sentences as one utterance."""
    rate: int | None = None
    try:
        async for _, (speech, _ms) in spoken:
            if rate is None:
                rate = speech.sample_rate
                await send(AudioStart(rate=rate, width=WIDTH, channels=CHANNELS).event())
            for event in audio_events(speech, rate):
                await send(event)
    finally:
        await spoken.aclose()
    await send(AudioStop().event())


class SpeechStream:
    """One synthesize-start ... synthesize-stop stream: text in as it comes, sentences out as they are made.
    It holds a dialogue slot (`admission`) from start to stop."""

    def __init__(
        self, speak: Speak, send: Send, splitter: SentenceSplitter, max_chars: int, admission: Admission
    ) -> None:
        self._send = send
        self._splitter = splitter
        self._max_chars = max_chars
        self._admission = admission
        self._chars = 0
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        self._spoken = Prefetched(self._queued(), speak)
        self._task = asyncio.create_task(self._speak_all())
        self.failed = False

    def add(self, text: str) -> None:
        """A synthesize-chunk's text; its whole sentences go to synthesis at once. Over `max_chars` in all,
        the stream is refused (and what follows ignored until synthesize-stop)."""
        if self.failed:
            return
        self._chars += len(text)
        if self._chars > self._max_chars:
            self.failed = True
            self._spoken.cancel()
            raise invalid_request(
                f"The streamed text is over {self._max_chars} characters.",
                field="text",
                max_speech_input_chars=self._max_chars,
            )
        self._queue(self._splitter.feed(text))

    async def finish(self) -> None:
        """synthesize-stop: the rest of the text spoken (a synthesis failure is raised here); the caller
        then sends synthesize-stopped, after an error too, so a client waiting for it never hangs."""
        try:
            if not self.failed:
                self._queue(self._splitter.flush())
            self._texts.put_nowait(None)
            await self._task
        finally:
            self._admission.release()

    async def abort(self) -> None:
        """The connection ended mid-stream: stop synthesising."""
        self._spoken.cancel()
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        self._admission.release()

    def _queue(self, sentences: list[str]) -> None:
        for sentence in sentences:
            if speakable := clean_for_speech(sentence):
                self._texts.put_nowait(speakable)

    async def _queued(self) -> AsyncIterator[str]:
        while (text := await self._texts.get()) is not None:
            yield text

    async def _speak_all(self) -> None:
        try:
            async for _, (speech, _ms) in self._spoken:
                await self._send(AudioStart(rate=speech.sample_rate, width=WIDTH, channels=CHANNELS).event())
                for event in audio_events(speech, speech.sample_rate):
                    await self._send(event)
                await self._send(AudioStop().event())
        finally:
            await self._spoken.aclose()
