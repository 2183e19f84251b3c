"""The `wyoming` package's client, driven as Home Assistant's Wyoming integration drives a speech server: a
connection per request, `transcribe` + 16 kHz 16-bit mono audio in 1024-sample chunks, `synthesize` read until
`audio-stop`, a streamed synthesis read until `synthesize-stopped`. Every read is bounded in time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeVoice,
)

from tests.conftest import WYOMING_PORT
from voice_orchestrator.audio import AudioLimits, decode_audio

HOST = "127.0.0.1"
SAMPLES_PER_CHUNK = 1024
READ_TIMEOUT_S = 60.0


def pcm16k(wav: bytes) -> bytes:
    """A recording as Home Assistant streams it: 16 kHz, 16-bit, mono."""
    audio = decode_audio(wav, AudioLimits(0.0, 600.0))
    return (np.clip(audio.samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


async def read(client: AsyncTcpClient, limit_s: float = READ_TIMEOUT_S) -> Event | None:
    async with asyncio.timeout(limit_s):
        return await client.read_event()


async def describe(port: int = WYOMING_PORT) -> Info:
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Describe().event())
        while (event := await read(client)) is not None:
            if Info.is_type(event.type):
                return Info.from_event(event)
    raise AssertionError("the connection ended without info")


async def send_audio(client: AsyncTcpClient, pcm: bytes, rate: int = 16000) -> None:
    await client.write_event(AudioStart(rate=rate, width=2, channels=1).event())
    step = SAMPLES_PER_CHUNK * 2
    for offset in range(0, len(pcm), step):
        chunk = AudioChunk(rate=rate, width=2, channels=1, audio=pcm[offset : offset + step])
        await client.write_event(chunk.event())
    await client.write_event(AudioStop().event())


async def transcribe(pcm: bytes, language: str | None, port: int = WYOMING_PORT) -> Event:
    """The transcript event (or the error event) for one utterance."""
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Transcribe(language=language).event())
        await send_audio(client, pcm)
        while (event := await read(client)) is not None:
            if Transcript.is_type(event.type) or event.type == "error":
                return event
    raise AssertionError("the connection ended without a transcript")


@dataclass
class Utterance:
    """Audio received between one audio-start and its audio-stop."""

    rate: int
    width: int
    channels: int
    chunks: list[bytes] = field(default_factory=list)

    @property
    def pcm(self) -> bytes:
        return b"".join(self.chunks)

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (self.rate * self.width * self.channels)

    def as_16k(self) -> bytes:
        """The speech resampled to what a recogniser is sent."""
        samples = np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / 32768.0
        positions = np.arange(0, len(samples), self.rate / 16000.0)
        resampled = np.interp(positions, np.arange(len(samples)), samples)
        return bytes((resampled * 32767.0).astype("<i2").tobytes())


@dataclass
class Received:
    utterances: list[Utterance] = field(default_factory=list)
    errors: list[Event] = field(default_factory=list)
    stopped: bool = False
    ended: bool = False  # the server closed the connection


async def collect(client: AsyncTcpClient, until: str, limit_s: float = READ_TIMEOUT_S) -> Received:
    """Events until an `until` event (transcript, audio-stop, synthesize-stopped) or, unless a stream's
    synthesize-stopped is awaited (it follows an error), an error."""
    received = Received()
    while True:
        event = await read(client, limit_s)
        if event is None:
            received.ended = True
            return received
        if AudioStart.is_type(event.type):
            start = AudioStart.from_event(event)
            received.utterances.append(Utterance(start.rate, start.width, start.channels))
        elif AudioChunk.is_type(event.type):
            assert received.utterances, "audio-chunk before audio-start"
            received.utterances[-1].chunks.append(AudioChunk.from_event(event).audio)
        elif event.type == "error":
            received.errors.append(event)
        if SynthesizeStopped.is_type(event.type):
            received.stopped = True
        if event.type == until or (event.type == "error" and until != "synthesize-stopped"):
            return received


async def synthesize(text: str, voice: str | None, port: int = WYOMING_PORT) -> Received:
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice)).event())
        return await collect(client, "audio-stop")


async def synthesize_streamed(pieces: list[str], voice: str | None, port: int = WYOMING_PORT) -> Received:
    """A streamed synthesis as Home Assistant sends a language model's answer: the pieces as they come
    (after the first one, each waits for the audio of a sentence already complete: proof of streaming)."""
    async with AsyncTcpClient(HOST, port) as client:
        await client.write_event(SynthesizeStart(voice=SynthesizeVoice(name=voice)).event())
        await client.write_event(SynthesizeChunk(text=pieces[0]).event())
        first = await collect(client, "audio-stop")  # before the rest of the text is even sent
        for piece in pieces[1:]:
            await client.write_event(SynthesizeChunk(text=piece).event())
        # Home Assistant also sends the whole text as a plain synthesize, for servers without streaming.
        await client.write_event(Synthesize(text="".join(pieces), voice=SynthesizeVoice(name=voice)).event())
        await client.write_event(SynthesizeStop().event())
        rest = await collect(client, "synthesize-stopped")
        return Received(first.utterances + rest.utterances, first.errors + rest.errors, rest.stopped)
