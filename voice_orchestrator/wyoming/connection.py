"""One Wyoming connection: events read (bounded), each request answered through the gate and the turn core.

A refused request is answered with an `error` event (`code`: the API's error code, `text`: its message) and
the connection stays usable; the connection ends after an error only where the stream cannot be followed any
more: a malformed frame, or an audio stream that is refused while the client is still sending it (too long,
a bad format) — the client then reads the error and the end of the stream instead of waiting for a
transcript that will not come. A transcription that finds no speech is an empty `transcript`, as
wyoming-faster-whisper answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

from wyoming.asr import Transcript
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.ping import Pong
from wyoming.tts import SynthesizeStopped

from voice_orchestrator.api.gate import logged_refusal
from voice_orchestrator.api.openai.gateway import OpenAIGateway
from voice_orchestrator.api.openai.speech import check_speech_length, sentences_to_speak
from voice_orchestrator.audio import AudioLimits
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode, invalid_request
from voice_orchestrator.metrics import WYOMING_LATENCY, WYOMING_REQUESTS, Meter, outcome_of
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.settings import IngressSettings
from voice_orchestrator.turn import VoiceChoice, normalize_language
from voice_orchestrator.wyoming.audio_in import PcmFormat, SpeechInput
from voice_orchestrator.wyoming.framing import FrameError, read_event
from voice_orchestrator.wyoming.info import describe
from voice_orchestrator.wyoming.protocol import (
    SynthesizeChunkData,
    SynthesizeData,
    SynthesizeStartData,
    TranscribeData,
    VoiceData,
    base_language,
    parse,
)
from voice_orchestrator.wyoming.synthesis import SpeechStream, send_utterance

logger = logging.getLogger("voice_orchestrator.wyoming")
# The metrics' `kind` of each event a request is made of ("frame": bytes that were not an event).
EVENT_KINDS = {
    "describe": "describe",
    "ping": "describe",
    "transcribe": "transcribe",
    "audio-start": "transcribe",
    "audio-chunk": "transcribe",
    "audio-stop": "transcribe",
    "synthesize": "synthesize",
    "synthesize-start": "synthesize_stream",
    "synthesize-chunk": "synthesize_stream",
    "synthesize-stop": "synthesize_stream",
}


class ConnectionGone(Exception):
    """The client stopped reading (or left)."""


class EndConnection(Exception):
    """The request's error has been sent; the stream cannot be followed any further."""


class WyomingConnection:
    def __init__(
        self,
        gateway: OpenAIGateway,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        meter: Meter,
    ) -> None:
        self._gateway = gateway
        self._reader = reader
        self._writer = writer
        self._meter = meter
        self._write_lock = asyncio.Lock()
        self._language: str | None = None
        self._input: SpeechInput | None = None
        self._stream: SpeechStream | None = None
        # A synthesize-start refused (no free slot, an unknown voice): its chunks are let pass unspoken and
        # its synthesize-stop still answered with synthesize-stopped (one error event in all).
        self._stream_refused = False
        self._stream_started = 0.0
        self._handlers: dict[str, Callable[[Event, IngressSettings], Awaitable[bool]]] = {
            "describe": self._describe,
            "transcribe": self._transcribe,
            "audio-start": self._audio_start,
            "audio-chunk": self._audio_chunk,
            "audio-stop": self._audio_stop,
            "synthesize": self._synthesize,
            "synthesize-start": self._synthesize_start,
            "synthesize-chunk": self._synthesize_chunk,
            "synthesize-stop": self._synthesize_stop,
            "ping": self._ping,
        }

    async def run(self) -> str:
        """Serve the connection until it ends; why it ended."""
        try:
            while True:
                idle = self._gateway.settings.wyoming_idle_timeout_seconds
                try:
                    async with asyncio.timeout(idle):
                        event = await read_event(self._reader)
                except TimeoutError:
                    return "idle timeout"
                except FrameError as error:
                    started = time.perf_counter()
                    await self._refuse(invalid_request(f"Malformed Wyoming event: {error}"), "frame", started)
                    return "malformed event"
                if event is None:
                    return "client closed"
                if not await self._handle(event):
                    return "request refused mid-stream"
        except (ConnectionGone, ConnectionError):
            return "client gone"
        finally:
            if self._stream is not None:
                await self._stream.abort()
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def _handle(self, event: Event) -> bool:
        handler = self._handlers.get(event.type)
        if handler is None:  # other programs' events (wake, intent, satellite ...): not ours, ignored
            logger.debug("wyoming event ignored: %s", event.type[:64])
            return True
        started = time.perf_counter()
        settings = self._gateway.settings  # one snapshot per event
        try:
            served = await handler(event, settings)
        except EndConnection:
            return False
        except Exception as error:
            await self._refuse(error, event.type, started)
            return True
        if served:
            self._served(EVENT_KINDS[event.type], started)
        return True

    # --- recognition
    async def _describe(self, event: Event, settings: IngressSettings) -> bool:
        await self._send(describe(await self._gateway.catalog()).event())
        return True

    async def _transcribe(self, event: Event, settings: IngressSettings) -> bool:
        data = parse(TranscribeData, event.type, event.data)
        self._input = None
        self._language = normalize_language(base_language(data.language))
        return False

    async def _audio_start(self, event: Event, settings: IngressSettings) -> bool:
        await self._during_audio(event, lambda: self._start_input(event, settings))
        return False

    async def _audio_chunk(self, event: Event, settings: IngressSettings) -> bool:
        def add() -> None:
            if self._input is None:  # a client that sends chunks without audio-start
                self._start_input(event, settings)
            assert self._input is not None
            self._input.add(event.data, event.payload or b"")

        await self._during_audio(event, add)
        return False

    async def _audio_stop(self, event: Event, settings: IngressSettings) -> bool:
        speech, self._input = self._input, None
        language, self._language = self._language, None
        if speech is None:  # no audio at all: an empty transcript, as wyoming-faster-whisper answers
            await self._send(Transcript(text="").event())
            return True
        audio = speech.finish()
        with self._gateway.gate.admit():
            try:
                heard, _ms = await self._gateway.core.hear(audio, language, settings=settings)
            except OrchestratorError as error:
                if error.code != OrchestratorErrorCode.SPEECH_RECOGNITION_FAILED:
                    raise
                await self._send(Transcript(text="", language=language).event())
                return True
        await self._send(Transcript(text=heard.text, language=heard.language).event())
        return True

    def _start_input(self, event: Event, settings: IngressSettings) -> None:
        limits = AudioLimits(settings.min_audio_seconds, settings.max_audio_seconds)
        self._input = SpeechInput(PcmFormat.of(event.data), limits)

    async def _during_audio(self, event: Event, step: Callable[[], None]) -> None:
        """A step of an audio stream; refused, the error is sent and the connection ends (the client is
        still sending audio that would otherwise be taken for a new request)."""
        started = time.perf_counter()
        try:
            step()
        except OrchestratorError as error:
            self._input = None
            await self._refuse(error, event.type, started)
            raise EndConnection from error

    # --- synthesis
    async def _synthesize(self, event: Event, settings: IngressSettings) -> bool:
        if self._stream is not None or self._stream_refused:  # inside a stream, for older servers only
            return False
        data = parse(SynthesizeData, event.type, event.data)
        check_speech_length(data.text, settings, "text")
        sentences = sentences_to_speak(data.text, settings, "text")
        language, choose = await self._voice(data.voice)
        with self._gateway.gate.admit():
            spoken = self._gateway.core.say(sentences, language, choose)
            await send_utterance(self._send, spoken)
        return True

    async def _synthesize_start(self, event: Event, settings: IngressSettings) -> bool:
        if self._stream is not None:  # a new stream replaces one never stopped
            await self._stream.abort()
            self._stream = None
        self._stream_refused = True  # until the stream is open
        data = parse(SynthesizeStartData, event.type, event.data)
        language, choose = await self._voice(data.voice)
        admission = self._gateway.gate.admit()
        core = self._gateway.core
        splitter = SentenceSplitter(settings.stream_soft_split_chars, settings.stream_first_chunk_chars)
        self._stream = SpeechStream(
            lambda text: core.speak(text, language, choose(text), settings),
            self._send,
            splitter,
            settings.max_speech_input_chars,
            admission,
        )
        self._stream_refused = False
        self._stream_started = time.perf_counter()
        return False

    async def _synthesize_chunk(self, event: Event, settings: IngressSettings) -> bool:
        data = parse(SynthesizeChunkData, event.type, event.data)
        if self._stream_refused:
            return False
        if self._stream is None:
            raise invalid_request("synthesize-chunk must come between synthesize-start and synthesize-stop.")
        self._stream.add(data.text)
        return False

    async def _synthesize_stop(self, event: Event, settings: IngressSettings) -> bool:
        stream, self._stream = self._stream, None
        if self._stream_refused:
            self._stream_refused = False
            await self._send(SynthesizeStopped().event())
            return False
        if stream is None:
            raise invalid_request("synthesize-stop without a synthesize-start.")
        try:
            await stream.finish()
        except Exception as error:  # refused here, so that synthesize-stopped still comes after the error
            await self._refuse(error, event.type, self._stream_started)
            return False
        finally:
            await self._send(SynthesizeStopped().event())
        if not stream.failed:  # a stream refused mid-way was counted then
            self._served(EVENT_KINDS[event.type], self._stream_started)
        return False

    async def _voice(self, voice: VoiceData | None) -> tuple[str | None, VoiceChoice]:
        """The language asked for and the voice per sentence: a named voice (checked now), or by language
        (each sentence in its script's default voice)."""
        if voice is None:
            return None, lambda text: None
        language = normalize_language(base_language(voice.language))
        if voice.name is None:
            return language, lambda text: None
        catalog = await self._gateway.catalog()
        catalog.check_voice(voice.name)
        return language, catalog.voice_choice(voice.name)

    async def _ping(self, event: Event, settings: IngressSettings) -> bool:
        text = event.data.get("text")
        await self._send(Pong(text=text if isinstance(text, str) else None).event())
        return False

    # --- sending, counting, logging
    async def _send(self, event: Event) -> None:
        """One event, written whole (events from a stream's task and the reader never interleave); a client
        that does not read for the idle timeout is gone."""
        async with self._write_lock:
            try:
                async with asyncio.timeout(self._gateway.settings.wyoming_idle_timeout_seconds):
                    await async_write_event(event, self._writer)
            except (TimeoutError, ConnectionError, RuntimeError) as error:
                raise ConnectionGone from error

    async def _refuse(self, error: Exception, event_type: str, started: float) -> None:
        request_id = uuid.uuid4().hex
        refused = logged_refusal(logger, f"wyoming {event_type}", error, request_id, started)
        self._count(EVENT_KINDS.get(event_type, "frame"), refused.code)
        await self._send(Error(text=refused.message, code=refused.code.value).event())

    def _served(self, kind: str, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._count(kind, None)
        self._meter.record(WYOMING_LATENCY, elapsed_ms, {"kind": kind})
        logger.info("wyoming %s served", kind, extra={"duration_ms": round(elapsed_ms, 1)})

    def _count(self, kind: str, code: OrchestratorErrorCode | None) -> None:
        tags = {"kind": kind, "outcome": outcome_of(code), "error_code": code.value if code else "none"}
        self._meter.record(WYOMING_REQUESTS, 1.0, tags)
