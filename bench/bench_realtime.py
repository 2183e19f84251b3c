"""The realtime socket against the WAV route, and barge-in: `/v1/realtime` through the official `openai`
client with the question streamed at real-time pace, `POST /api/orchestrator/dialogue` on the same clip, in
one run.

    python -m bench.bench_realtime --url http://127.0.0.1:8000          # a running `serve run`
    python -m bench.bench_realtime --serve                              # serves serve_config.yaml itself
    python -m bench.bench_realtime --serve --compare-preemptive         # and a second app, preemptive off
    python -m bench.bench_realtime --serve --preemptive-delay-ms 100 --repeats 7 --languages ja

Realtime: one socket per question; `session.update` sets the transcription language; 300 ms of silence,
then the clip as 24 kHz PCM16 in 20 ms `input_audio_buffer.append` chunks paced by the wall clock (chunk n
leaves at start + n x 20 ms), then silence the same way until `response.done` (at most 15 s). Server VAD
ends the turn. Times are client clocks from the end of the clip (the moment its last chunk was sent; the
clip's own trailing pause is part of the clip): `...transcription.completed`, the first
`response.output_audio.delta`, `response.done`; also `speech_stopped`, and the server's own
`end_of_speech_to_first_audio_ms`, `llm_ms`, `tts_ms` (response metadata).
REST: the same samples as a WAV to `/dialogue`, request sent -> last byte of the reply. Per repetition and
language both are asked, one after the other (which goes first alternates), so both see the same machine
state; "first audio p50 / REST p50" below 1 means the realtime listener hears the answer sooner.
Barge-in: the first question streamed as above; at its answer's first audio delta the second question
follows at once, at real-time pace (its own leading pause included). Measured: `speech_started` (received)
-> `response.done` with status `cancelled` (received; negative when the server sends the cancellation
first), the second question's speech onset (its first chunk sent + its leading pause) -> that cancellation,
and whether the second question got its own completed response.

Clips are bench/clips.py's (Open JTalk, Piper) speaking bench_stream's questions: the first of each language
is asked (and is the interrupted one), the second interrupts. With --serve the app runs on port 8015 (8016:
preemptive answers off, VOICE_REALTIME_PREEMPTIVE=false); --preemptive-delay-ms sets
VOICE_REALTIME_PREEMPTIVE_DELAY_MS on the served apps. A run that fails (socket closed, missing event,
restart, no answer within the bound) is listed with the events it got and counted in the tables as
"(+k failed)", and retried at most twice once the app is healthy.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import time
import wave
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

import httpx
import numpy as np
import openai
from openai import AsyncOpenAI
from openai.resources.realtime.realtime import AsyncRealtimeConnection
from openai.types.realtime import (
    ConversationItemInputAudioTranscriptionCompletedEvent,
    RealtimeErrorEvent,
    RealtimeServerEvent,
    ResponseAudioDeltaEvent,
    ResponseAudioTranscriptDoneEvent,
    ResponseDoneEvent,
)
from websockets.exceptions import WebSocketException

from bench.bench_dialogue import percentile
from bench.bench_stream import QUESTIONS
from bench.clips import english_clip, japanese_clip
from bench.serving import ROOT, served
from voice_orchestrator.audio import encode_wav_pcm16, resample
from voice_orchestrator.protocol import FloatArray

ROUTE = "/api/orchestrator/dialogue"
MODEL = "voice-dialogue"
RATE = 24_000
CHUNK_S = 0.02
CHUNK_BYTES = int(RATE * CHUNK_S) * 2  # PCM16 mono
SILENCE = bytes(CHUNK_BYTES)
LEAD_IN_S = 0.3  # silence before a question: the VAD's prefix padding has audio to take
ANSWER_LIMIT_S = 15.0  # silence streamed at most while waiting for an answer
FIRST_AUDIO_LIMIT_S = 20.0  # barge-in: silence at most until the first answer's first audio
SECOND_ANSWER_LIMIT_S = 25.0  # barge-in: silence at most until the second question's response.done
EVENT_LIMIT_S = 10.0  # session.created / session.updated
RUN_LIMIT_S = 90.0  # one run, all in (connect to close)
ATTEMPTS = 3
HEALTHY_LIMIT_S = 300.0  # waiting for a restarted app
PORTS = {"preemptive": 8015, "preemptive off": 8016}
T = TypeVar("T")


@dataclass
class Clip:
    language: str
    text: str
    pcm: bytes  # 24 kHz PCM16 mono: what the socket gets
    wav: bytes  # the same samples as a WAV: what /dialogue gets
    seconds: float
    leading_pause_ms: float
    trailing_pause_ms: float


def question_clip(language: str, text: str) -> Clip:
    wav = japanese_clip(text) if language == "ja" else english_clip(text)
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    samples = resample((np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0), rate, RATE)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    leading, trailing = pauses(samples)
    return Clip(language, text, pcm, encode_wav_pcm16(samples, RATE), samples.size / RATE, leading, trailing)


def pauses(samples: FloatArray) -> tuple[float, float]:
    """Milliseconds before the first and after the last 10 ms frame louder than -40 dBFS."""
    frame = RATE // 100
    frames = samples[: samples.size // frame * frame].reshape(-1, frame)
    loud = np.flatnonzero(np.sqrt(np.mean(frames**2, axis=1)) > 0.01)
    if not loud.size:
        return 0.0, 0.0
    return loud[0] * 10.0, float((samples.size - (loud[-1] + 1) * frame) * 1000 / RATE)


class Failed(Exception):
    """A run that did not get the events it waits for; the message holds what it got."""


class Listener:
    """Every server event, received by a task of its own and stamped with the client clock on arrival."""

    def __init__(self, connection: AsyncRealtimeConnection) -> None:
        self.events: list[tuple[float, RealtimeServerEvent]] = []
        self.ended: BaseException | None = None
        self.open = True
        self._task = asyncio.create_task(self._listen(connection))

    async def _listen(self, connection: AsyncRealtimeConnection) -> None:
        try:
            async for event in connection:
                self.events.append((time.perf_counter(), event))
        except Exception as error:
            self.ended = error
        finally:
            self.open = False

    async def stop(self) -> None:
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task

    def after(self, since: float, kind: str) -> list[tuple[float, RealtimeServerEvent]]:
        return [(at, event) for at, event in self.events if at >= since and event.type == kind]

    def first(self, since: float, kind: str) -> tuple[float, RealtimeServerEvent] | None:
        found = self.after(since, kind)
        return found[0] if found else None

    def check(self, ready: bool) -> bool:
        """`ready`, or an error when the socket has closed (nothing more can come)."""
        if not ready and not self.open:
            raise ConnectionError(f"the socket closed ({self.ended!r}); {self.sequence(0.0)}")
        return ready

    async def until(self, ready: Callable[[], bool], limit_s: float, what: str) -> None:
        deadline = time.perf_counter() + limit_s
        while not self.check(ready()):
            if time.perf_counter() > deadline:
                raise Failed(f"no {what} within {limit_s:.0f} s; {self.sequence(0.0)}")
            await asyncio.sleep(0.01)

    def sequence(self, origin: float) -> str:
        """The events so far in arrival order, in ms after `origin` (a run of deltas of one kind folded)."""
        runs: list[tuple[str, float, int]] = []
        for at, event in self.events:
            name: str = event.type
            if isinstance(event, ResponseDoneEvent):
                details = event.response.status_details
                name += f"({event.response.status}{'/' + str(details.reason) if details else ''})"
            elif isinstance(event, RealtimeErrorEvent):
                name += f"({event.error.code}: {event.error.message})"
            if runs and runs[-1][0] == name and name.endswith(".delta"):
                runs[-1] = (name, runs[-1][1], runs[-1][2] + 1)
            else:
                runs.append((name, at, 1))
        parts = [
            f"{name}{f' x{count}' if count > 1 else ''} @{(at - origin) * 1000:.0f}"
            for name, at, count in runs
        ]
        return "events: " + ", ".join(parts)


class Pacer:
    """The input audio at real-time pace: 20 ms chunks, chunk n sent at start + n x 20 ms by the wall clock
    (a late chunk goes at once, so sleeps never add up to drift)."""

    def __init__(self, connection: AsyncRealtimeConnection, listener: Listener) -> None:
        self._connection = connection
        self._listener = listener
        self._start: float | None = None
        self._sent = 0

    async def send(self, pcm: bytes) -> float:
        """Streams `pcm`; returns when its last chunk was sent."""
        for offset in range(0, len(pcm), CHUNK_BYTES):
            self._start = self._start or time.perf_counter()
            delay = self._start + self._sent * CHUNK_S - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = base64.b64encode(pcm[offset : offset + CHUNK_BYTES]).decode("ascii")
            await self._connection.input_audio_buffer.append(audio=chunk)
            self._sent += 1
        return time.perf_counter()

    async def silence_until(self, ready: Callable[[], bool], limit_s: float) -> bool:
        """Silence, chunk by chunk, until `ready` (True) or for `limit_s` (False)."""
        deadline = time.perf_counter() + limit_s
        while not self._listener.check(ready()):
            if time.perf_counter() > deadline:
                return False
            await self.send(SILENCE)
        return True


@dataclass
class Turn:
    """One realtime question: ms from the end of the clip (client clock), what was heard and said."""

    transcript_ms: float | None
    first_audio_ms: float | None
    done_ms: float
    speech_stopped_ms: float | None
    status: str
    transcript: str
    reply: str
    metadata: dict[str, str]


@dataclass
class BargeIn:
    started_to_cancelled_ms: float | None  # speech_started received -> response.done(cancelled) received
    onset_to_cancelled_ms: float | None  # the second clip's speech sent (its leading pause skipped) -> that
    cancel_first: bool  # response.done(cancelled) arrived before the speech_started that caused it
    first_status: str  # of the interrupted response: cancelled, or completed when it ended before the speech
    answered: bool  # the second question got its own completed response
    transcript: str  # the second question, as heard
    reply: str
    cut_reason: str  # of the second answer (the server's reply guard), if any
    sequence: str  # the events from the second clip's first chunk on


class Connected:
    """A realtime socket with its language set and a listener running."""

    def __init__(self, client: AsyncOpenAI, language: str) -> None:
        self._manager = client.realtime.connect(model=MODEL)
        self._language = language
        self.listener: Listener | None = None

    async def __aenter__(self) -> tuple[AsyncRealtimeConnection, Listener]:
        connection = await self._manager.__aenter__()
        listener = self.listener = Listener(connection)
        await listener.until(
            lambda: listener.first(0.0, "session.created") is not None, EVENT_LIMIT_S, "session"
        )
        asked = time.perf_counter()
        await connection.session.update(
            session={"type": "realtime", "audio": {"input": {"transcription": {"language": self._language}}}}
        )
        await listener.until(
            lambda: listener.first(asked, "session.updated") is not None, EVENT_LIMIT_S, "session.updated"
        )
        return connection, listener

    async def __aexit__(self, *exc: object) -> None:
        if self.listener is not None:
            await self.listener.stop()
        await self._manager.__aexit__(None, None, None)


def errors(listener: Listener, since: float) -> list[str]:
    return [
        f"{event.error.code}: {event.error.message}"
        for _, event in listener.after(since, "error")
        if isinstance(event, RealtimeErrorEvent)
    ]


def reply_after(listener: Listener, since: float, response_id: str) -> str:
    for _, event in listener.after(since, "response.output_audio_transcript.done"):
        if isinstance(event, ResponseAudioTranscriptDoneEvent) and event.response_id == response_id:
            return event.transcript
    return ""


async def realtime_turn(client: AsyncOpenAI, clip: Clip) -> Turn:
    async with Connected(client, clip.language) as (connection, listener):
        pacer = Pacer(connection, listener)
        began = time.perf_counter()
        await pacer.send(SILENCE * round(LEAD_IN_S / CHUNK_S))
        end = await pacer.send(clip.pcm)
        if not await pacer.silence_until(
            lambda: bool(listener.after(began, "response.done")), ANSWER_LIMIT_S
        ):
            raise Failed(f"no response.done {ANSWER_LIMIT_S:.0f} s after the clip; {listener.sequence(end)}")
        done_at, done = listener.after(began, "response.done")[0]
        assert isinstance(done, ResponseDoneEvent)
        if problems := errors(listener, began):
            raise Failed(f"error events {problems}; {listener.sequence(end)}")

        def since_end(kind: str) -> float | None:
            found = listener.first(began, kind)
            return (found[0] - end) * 1000.0 if found and found[0] <= done_at else None

        heard = listener.first(began, "conversation.item.input_audio_transcription.completed")
        transcript = ""
        if heard and isinstance(heard[1], ConversationItemInputAudioTranscriptionCompletedEvent):
            transcript = heard[1].transcript
        response = done.response
        return Turn(
            transcript_ms=since_end("conversation.item.input_audio_transcription.completed"),
            first_audio_ms=since_end("response.output_audio.delta"),
            done_ms=(done_at - end) * 1000.0,
            speech_stopped_ms=since_end("input_audio_buffer.speech_stopped"),
            status=str(response.status),
            transcript=transcript,
            reply=reply_after(listener, began, response.id or ""),
            metadata=dict(response.metadata or {}),
        )


async def barge_in(client: AsyncOpenAI, first: Clip, second: Clip) -> BargeIn:
    async with Connected(client, first.language) as (connection, listener):
        pacer = Pacer(connection, listener)
        began = time.perf_counter()
        await pacer.send(SILENCE * round(LEAD_IN_S / CHUNK_S))
        end = await pacer.send(first.pcm)
        audio = lambda: listener.first(began, "response.output_audio.delta") is not None  # noqa: E731
        if not await pacer.silence_until(audio, FIRST_AUDIO_LIMIT_S):
            raise Failed(
                f"no first audio {FIRST_AUDIO_LIMIT_S:.0f} s after the clip; {listener.sequence(end)}"
            )
        found = listener.first(began, "response.output_audio.delta")
        assert found is not None
        assert isinstance(found[1], ResponseAudioDeltaEvent)
        interrupted = found[1].response_id
        speaking = time.perf_counter()
        await pacer.send(second.pcm)

        def done_of(wanted: Callable[[str], bool]) -> tuple[float, ResponseDoneEvent] | None:
            for at, event in listener.after(began, "response.done"):
                if isinstance(event, ResponseDoneEvent) and wanted(event.response.id or ""):
                    return at, event
            return None

        answered = lambda: done_of(lambda rid: rid != interrupted) is not None  # noqa: E731
        await pacer.silence_until(answered, SECOND_ANSWER_LIMIT_S)
        sequence = listener.sequence(speaking)
        if problems := errors(listener, began):
            raise Failed(f"error events {problems}; {sequence}")
        cut = done_of(lambda rid: rid == interrupted)
        if cut is None:
            raise Failed(f"the interrupted response never ended; {sequence}")
        started = listener.first(speaking, "input_audio_buffer.speech_started")
        cancelled = cut[1].response.status == "cancelled"
        own = done_of(lambda rid: rid != interrupted)
        heard = listener.first(speaking, "conversation.item.input_audio_transcription.completed")
        return BargeIn(
            started_to_cancelled_ms=(cut[0] - started[0]) * 1000.0 if started and cancelled else None,
            onset_to_cancelled_ms=(cut[0] - speaking) * 1000.0 - second.leading_pause_ms
            if cancelled
            else None,
            cancel_first=cancelled and (started is None or cut[0] < started[0]),
            first_status=str(cut[1].response.status),
            answered=own is not None and own[1].response.status == "completed",
            transcript=heard[1].transcript
            if heard and isinstance(heard[1], ConversationItemInputAudioTranscriptionCompletedEvent)
            else "",
            reply=reply_after(listener, speaking, own[1].response.id or "") if own else "",
            cut_reason=(own[1].response.metadata or {}).get("cut_reason", "") if own else "",
            sequence=sequence,
        )


@dataclass
class Rest:
    e2e_ms: float
    transcript: str
    reply: str


async def rest_turn(http: httpx.AsyncClient, url: str, clip: Clip) -> Rest:
    files = {"audio": ("question.wav", clip.wav, "audio/wav")}
    started = time.perf_counter()
    async with http.stream("POST", url + ROUTE, files=files, data={"language": clip.language}) as response:
        async for _ in response.aiter_bytes():
            pass
        e2e = (time.perf_counter() - started) * 1000.0
        if response.status_code != 200:
            raise Failed(f"/dialogue answered {response.status_code}")
        headers = response.headers
    return Rest(e2e, unquote(headers.get("X-Input-Text", "")), unquote(headers.get("X-Output-Text", "")))


@dataclass
class Results:
    turns: dict[tuple[str, str], list[Turn]] = field(default_factory=dict)  # (app, language)
    rest: dict[str, list[Rest]] = field(default_factory=dict)  # language
    barge_ins: dict[str, list[BargeIn]] = field(default_factory=dict)  # language
    failures: list[tuple[str, str]] = field(default_factory=list)  # (what: "REST ja", why)


async def healthy(http: httpx.AsyncClient, url: str) -> bool:
    """Until the app answers healthy again (it may be restarting), bounded."""
    deadline = time.perf_counter() + HEALTHY_LIMIT_S
    while time.perf_counter() < deadline:
        try:
            response = await http.get(url + "/api/orchestrator/status", timeout=5)
            if response.json().get("status") == "healthy":
                return True
        except (httpx.HTTPError, ValueError):
            pass
        await asyncio.sleep(2)
    return False


async def attempt(
    name: str,
    run: Callable[[], Awaitable[T]],
    http: httpx.AsyncClient,
    url: str,
    failures: list[tuple[str, str]],
) -> T | None:
    """The run; after a failure (listed), the app healthy again and a new try, at most ATTEMPTS in all."""
    for _ in range(ATTEMPTS):
        try:
            async with asyncio.timeout(RUN_LIMIT_S):
                return await run()
        except (
            Failed,
            ConnectionError,
            TimeoutError,
            OSError,
            WebSocketException,
            openai.OpenAIError,
            httpx.HTTPError,
        ) as error:
            failures.append((name.split(" #")[0], f"{name}: {type(error).__name__}: {error}"))
        await healthy(http, url)
    return None


async def bench(urls: dict[str, str], clips: dict[str, tuple[Clip, Clip]], repeats: int) -> Results:
    """Per repetition and language: a realtime question on each app and the same clip on REST (which of
    them goes first alternates), then a barge-in on the first app."""
    results = Results()
    key = os.environ.get("VOICE_API_KEY") or "bench"
    first = next(iter(urls))
    clients = {
        app: AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) for app, url in urls.items()
    }
    async with httpx.AsyncClient(timeout=180, headers={"Authorization": f"Bearer {key}"}) as http:

        async def realtime(app: str, clip: Clip, name: str) -> Turn | None:
            run = partial(realtime_turn, clients[app], clip)
            return await attempt(name, run, http, urls[app], results.failures)

        async def rest(clip: Clip, name: str) -> Rest | None:
            return await attempt(
                name, partial(rest_turn, http, urls[first], clip), http, urls[first], results.failures
            )

        for url in urls.values():
            if not await healthy(http, url):
                raise SystemExit(f"{url} is not healthy (/api/orchestrator/status)")
        for language, (asked, _) in clips.items():  # warm the paths (models, caches, the socket): not counted
            for app in urls:
                await realtime(app, asked, f"warm-up realtime {app} {language}")
                results.turns[(app, language)] = []
            await rest(asked, f"warm-up REST {language}")
            results.rest[language], results.barge_ins[language] = [], []
        for repeat in range(repeats):
            for language, (asked, interrupting) in clips.items():
                order = [*urls, "REST"]
                for turn in order if repeat % 2 == 0 else reversed(order):
                    name = f"{'REST' if turn == 'REST' else 'realtime ' + turn} {language} #{repeat + 1}"
                    if turn == "REST":
                        if (sample := await rest(asked, name)) is not None:
                            results.rest[language].append(sample)
                    elif (heard := await realtime(turn, asked, name)) is not None:
                        results.turns[(turn, language)].append(heard)
                run = partial(barge_in, clients[first], asked, interrupting)
                name = f"barge-in {language} #{repeat + 1}"
                if (cut := await attempt(name, run, http, urls[first], results.failures)) is not None:
                    results.barge_ins[language].append(cut)
                print(f"  repetition {repeat + 1}/{repeats} {language} done", flush=True)
    for client in clients.values():
        await client.close()
    return results


def cpu() -> str:
    model, flags = "unknown", ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif name.strip() == "flags" and not flags:
            flags = value
    amx = sorted(flag for flag in flags.split() if flag.startswith("amx"))
    return f"CPU: {model} x {os.cpu_count()} ; AMX: {'yes (' + ' '.join(amx) + ')' if amx else 'no'}"


def cell(values: list[float]) -> str:
    return f"{percentile(values, 50):.0f} / {percentile(values, 95):.0f}" if values else "-"


def metadata(turns: list[Turn], name: str) -> list[float]:
    values: list[float] = []
    for turn in turns:
        with suppress(KeyError, ValueError):
            values.append(float(turn.metadata[name]))
    return values


def present(values: list[float | None]) -> list[float]:
    return [value for value in values if value is not None]


def report(results: Results, clips: dict[str, tuple[Clip, Clip]], apps: list[str], repeats: int) -> None:
    failed = Counter(what for what, _ in results.failures)

    def count(samples: int, what: str) -> str:
        return f"{samples}" + (f" (+{failed[what]} failed)" if failed[what] else "")

    print()
    print(cpu())
    for asked, interrupting in clips.values():
        for clip in (asked, interrupting):
            print(
                f"- {clip.language} clip 「{clip.text}」: {clip.seconds:.2f} s, leading pause "
                f"{clip.leading_pause_ms:.0f} ms, trailing pause {clip.trailing_pause_ms:.0f} ms"
            )
    print(
        f"\n### Realtime vs REST (ms, p50 / p95; {repeats} repetitions; realtime from the end of the clip)\n"
    )
    print(
        "| lang | app | n | transcript | first audio | response.done | REST /dialogue e2e (n) "
        "| first audio p50 / REST p50 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for language in clips:
        rest = [sample.e2e_ms for sample in results.rest[language]]
        for app in apps:
            turns = results.turns[(app, language)]
            first = present([turn.first_audio_ms for turn in turns])
            ratio = f"{percentile(first, 50) / percentile(rest, 50):.2f}" if first and rest else "-"
            print(
                f"| {language} | {app} | {count(len(turns), f'realtime {app} {language}')} "
                f"| {cell(present([turn.transcript_ms for turn in turns]))} | {cell(first)} "
                f"| {cell([turn.done_ms for turn in turns])} | {cell(rest)} "
                f"({count(len(rest), f'REST {language}')}) | {ratio} |"
            )
    print("\n### Realtime, the server's view (ms, p50 / p95)\n")
    print(
        "| lang | app | speech_stopped (client, from clip end) | end_of_speech_to_first_audio_ms "
        "| llm_ms | tts_ms |"
    )
    print("|---|---|---|---|---|---|")
    for language in clips:
        for app in apps:
            turns = results.turns[(app, language)]
            stopped = present([turn.speech_stopped_ms for turn in turns])
            print(
                f"| {language} | {app} | {cell(stopped)} | "
                f"{cell(metadata(turns, 'end_of_speech_to_first_audio_ms'))} "
                f"| {cell(metadata(turns, 'llm_ms'))} | {cell(metadata(turns, 'tts_ms'))} |"
            )
    print(f"\n### Barge-in ({apps[0]}; ms, p50 / p95)\n")
    print(
        "| lang | n | speech_started → response.done(cancelled) | 2nd question's speech sent → cancelled "
        "| cancelled | cancelled before speech_started | 2nd question answered |"
    )
    print("|---|---|---|---|---|---|---|")
    for language in clips:
        runs = results.barge_ins[language]
        cancelled = sum(run.first_status == "cancelled" for run in runs)
        answered = sum(run.answered for run in runs)
        print(
            f"| {language} | {count(len(runs), f'barge-in {language}')} "
            f"| {cell(present([run.started_to_cancelled_ms for run in runs]))} "
            f"| {cell(present([run.onset_to_cancelled_ms for run in runs]))} | {cancelled}/{len(runs)} "
            f"| {sum(run.cancel_first for run in runs)}/{cancelled} | {answered}/{len(runs)} |"
        )
    print("\n### Heard and said\n")
    for language in clips:
        turns = [turn for app in apps for turn in results.turns[(app, language)]]
        heard = Counter(turn.transcript for turn in turns)
        rest_heard = Counter(sample.transcript for sample in results.rest[language])
        print(f"- {language} realtime transcripts: {dict(heard)}; REST: {dict(rest_heard)}")
        statuses = Counter(turn.status for turn in turns)
        print(f"  realtime response statuses: {dict(statuses)}")
        if turns:
            print(f"  realtime reply: {turns[0].reply[:160]!r}")
        if results.rest[language]:
            print(f"  REST reply: {results.rest[language][0].reply[:160]!r}")
        for run in results.barge_ins[language]:
            print(
                f"  barge-in: interrupted response {run.first_status}; second question heard as "
                f"{run.transcript!r}, {'answered' if run.answered else 'NOT answered'}: {run.reply[:100]!r}"
                + (f" (cut: {run.cut_reason})" if run.cut_reason else "")
            )
        if results.barge_ins[language]:
            print("  barge-in event sequence (ms from the second clip's first chunk), first run:")
            print(f"    {results.barge_ins[language][0].sequence}")
    if results.failures:
        print(f"\n### Failed runs ({len(results.failures)}; retried at most {ATTEMPTS - 1} times)\n")
        for _, failure in results.failures:
            print(f"- {failure}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="a running app, e.g. http://127.0.0.1:8000")
    where.add_argument("--serve", action="store_true", help="serve the working tree's serve_config.yaml")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--languages", nargs="+", choices=("ja", "en"), default=["ja", "en"])
    parser.add_argument(
        "--preemptive-delay-ms",
        type=int,
        help="with --serve: VOICE_REALTIME_PREEMPTIVE_DELAY_MS of the served apps (default: the app's)",
    )
    parser.add_argument(
        "--compare-preemptive",
        action="store_true",
        help="with --serve: also serve the app with VOICE_REALTIME_PREEMPTIVE=false and ask both in turn",
    )
    args = parser.parse_args()
    if args.url and (args.compare_preemptive or args.preemptive_delay_ms is not None):
        parser.error("--compare-preemptive and --preemptive-delay-ms are server settings: they need --serve")
    if not 1 <= args.repeats <= 1000:
        parser.error("--repeats: 1 to 1000")
    if args.preemptive_delay_ms is not None and not 0 <= args.preemptive_delay_ms <= 5000:
        parser.error("--preemptive-delay-ms: 0 to 5000 (the server's bounds)")
    clips: dict[str, tuple[Clip, Clip]] = {}
    for language in args.languages:
        asked, interrupting = [question_clip(lang, text) for lang, text in QUESTIONS if lang == language][:2]
        clips[language] = (asked, interrupting)
    with ExitStack() as stack:
        if args.serve:
            env: dict[str, str] = {}
            if args.preemptive_delay_ms is not None:
                env["VOICE_REALTIME_PREEMPTIVE_DELAY_MS"] = str(args.preemptive_delay_ms)
            urls = {"preemptive": stack.enter_context(served(ROOT, PORTS["preemptive"], env))}
            if args.compare_preemptive:
                off = {**env, "VOICE_REALTIME_PREEMPTIVE": "false"}
                urls["preemptive off"] = stack.enter_context(served(ROOT, PORTS["preemptive off"], off))
        else:
            urls = {"as served": args.url.rstrip("/")}
        print(f"apps: {urls}; {args.repeats} repetitions; languages {args.languages}", flush=True)
        results = asyncio.run(bench(urls, clips, args.repeats))
    report(results, clips, list(urls), args.repeats)


if __name__ == "__main__":
    main()
