"""The official `openai` SDK's realtime client driving `/v1/realtime` the way a voice app does: speech
streamed at real-time pace in 20 ms appends, then silence, while the server's events are collected."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection

from voice_orchestrator.audio import resample

RATE = 24_000
CHUNK_S = 0.02


def pcm24k(wav: bytes) -> bytes:
    """A WAV (PCM16, any rate, mono) as the protocol's `audio/pcm`: 24 kHz mono PCM16."""
    with wave.open(io.BytesIO(wav)) as reader:
        rate, frames = reader.getframerate(), reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return (np.clip(resample(samples, rate, RATE), -1.0, 1.0) * 32767).astype("<i2").tobytes()


def in_order(types: list[str], wanted: list[str]) -> bool:
    """Whether `wanted` occurs in `types` in this order (other events between them allowed)."""
    position = 0
    for kind in types:
        if position < len(wanted) and kind == wanted[position]:
            position += 1
    return position == len(wanted)


def silence(seconds: float) -> bytes:
    return bytes(2 * int(RATE * seconds))


@asynccontextmanager
async def connect(base_url: str, **query: str) -> AsyncIterator[AsyncRealtimeConnection]:
    client = AsyncOpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
    async with client.realtime.connect(model="voice-dialogue", extra_query=query) as connection:
        yield connection


@dataclass
class Events:
    """Everything the server sent, with when it arrived (seconds since the collector started)."""

    items: list[tuple[float, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def types(self) -> list[str]:
        return [event.type for _, event in self.items]

    def of(self, kind: str) -> list[Any]:
        return [event for _, event in self.items if event.type == kind]

    def at(self, kind: str, index: int = 0) -> float:
        return [moment for moment, event in self.items if event.type == kind][index]

    async def until(self, kind: str, count: int = 1, within: float = 60.0) -> list[Any]:
        async with asyncio.timeout(within):
            while len(self.of(kind)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.of(kind)


async def collect(connection: AsyncRealtimeConnection, events: Events) -> None:
    async for event in connection:
        events.items.append((time.perf_counter() - events.started, event))
        events.arrived.set()


async def stream(connection: AsyncRealtimeConnection, pcm: bytes, pace: float = 1.0) -> None:
    """`pcm` in 20 ms appends at `pace` × real time, by the wall clock."""
    step = int(RATE * CHUNK_S) * 2
    started = time.perf_counter()
    for index, offset in enumerate(range(0, len(pcm), step)):
        chunk = base64.b64encode(pcm[offset : offset + step]).decode()
        await connection.input_audio_buffer.append(audio=chunk)
        ahead = started + (index + 1) * CHUNK_S / pace - time.perf_counter()
        if ahead > 0:
            await asyncio.sleep(ahead)


def audio_seconds(events: Events, response_id: str | None = None) -> float:
    deltas = [e for e in events.of("response.output_audio.delta") if response_id in (None, e.response_id)]
    return sum(len(base64.b64decode(event.delta)) for event in deltas) / 2 / RATE


async def barge_in(base_url: str, wav: bytes) -> Events:
    """A typed question with a long spoken answer, cut by the spoken question `wav` as soon as the answer's
    first audio arrives; the cut answer's item is then retrieved. Ends once the second one is answered."""
    events = Events()
    async with connect(base_url) as connection:
        collector = asyncio.create_task(collect(connection, events))
        try:
            session = {"type": "realtime", "audio": {"input": {"transcription": {"language": "en"}}}}
            await connection.session.update(session=session)  # type: ignore[arg-type]
            text = "Tell me a story about a cat."  # three sentences from the packaged model
            item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
            await connection.conversation.item.create(item=item)  # type: ignore[arg-type]
            await connection.response.create()
            await events.until("response.output_audio.delta", within=60)
            await stream(connection, pcm24k(wav) + silence(0.3))  # the user cuts in with a new question
            silent = asyncio.create_task(stream(connection, silence(10.0)))
            await events.until("response.done", 2, within=60)
            silent.cancel()
            cut_id = events.of("response.done")[0].response.output[0].id
            await connection.conversation.item.retrieve(item_id=cut_id)
            await events.until("conversation.item.retrieved")
        finally:
            collector.cancel()
    return events
