"""Command-line client: ask the server a spoken question and save (or play) the spoken answer.

    python -m voice_orchestrator.client question.wav                       # -> reply.wav, via /dialogue
    python -m voice_orchestrator.client question.wav --stream --play       # sentences as they are spoken
    python -m voice_orchestrator.client q2.wav --session my-talk -o a2.wav # a follow-up in one conversation

Exit status: 0 answered, 1 the server refused with a typed error (printed as `ERROR_CODE: message`), 2 bad
arguments or an unreadable input file, 3 the server could not be reached or broke the protocol.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import codecs
import io
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TextIO
from urllib.parse import unquote

import httpx
from pydantic import Field, TypeAdapter, ValidationError

from voice_orchestrator.protocol import (
    ErrorBody,
    StreamAudioEvent,
    StreamDoneEvent,
    StreamErrorEvent,
    StreamTranscriptEvent,
)

DIALOGUE_PATH = "/api/orchestrator/dialogue"
STREAM_PATH = "/api/orchestrator/dialogue/stream"
DEFAULT_URL = "http://127.0.0.1:8000"

EXIT_OK, EXIT_SERVER_ERROR, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 3

StreamEvent = Annotated[
    StreamTranscriptEvent | StreamAudioEvent | StreamDoneEvent | StreamErrorEvent,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter[StreamEvent](StreamEvent)


class ProtocolError(Exception):
    """The server's answer does not follow the API contract."""


class ServerError(Exception):
    """A typed error from the server: a JSON error response, or an `error` event ending a stream."""

    def __init__(self, body: ErrorBody, status: int | None = None) -> None:
        super().__init__(f"{body.error_code}: {body.message}")
        self.body = body
        self.status = status

    def describe(self) -> str:
        body = self.body
        facts = [f"HTTP {self.status}" if self.status else "during the stream", f"request {body.request_id}"]
        if body.retry_after is not None:
            facts.append(f"retry after {body.retry_after} s")
        if body.details:
            facts.append(f"details {body.details}")
        return f"{body.error_code}: {body.message} ({', '.join(facts)})"


# ---------------------------------------------------------------- pure parts (unit-tested without a server)


def parse_event(line: str | bytes) -> StreamEvent:
    """One NDJSON line of the streaming route as its typed event."""
    try:
        return _EVENT.validate_json(line)
    except ValidationError as error:
        raise ProtocolError(
            f"not a stream event: {str(line)[:200]!r} ({error.error_count()} errors)"
        ) from error


class NdjsonDecoder:
    """Splits a byte stream into events, whatever the chunk boundaries (mid-line, mid-UTF-8 character)."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")()
        self._pending = ""

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        self._pending += self._decode(chunk, final=False)
        *lines, self._pending = self._pending.split("\n")
        return [parse_event(line) for line in lines if line.strip()]

    def close(self) -> list[StreamEvent]:
        """The event of a last line that had no newline."""
        rest, self._pending = self._pending + self._decode(b"", final=True), ""
        return [parse_event(rest)] if rest.strip() else []

    def _decode(self, chunk: bytes, final: bool) -> str:
        try:
            return self._text.decode(chunk, final=final)
        except UnicodeDecodeError as error:
            raise ProtocolError(f"the stream is not UTF-8: {error}") from error


def iter_events(chunks: Iterable[bytes]) -> Iterator[StreamEvent]:
    decoder = NdjsonDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
    yield from decoder.close()


def read_text_header(headers: Mapping[str, str], name: str) -> str | None:
    """A text header the server percent-encodes (UTF-8 in Latin-1 headers), decoded."""
    value = headers.get(name)
    return unquote(value, encoding="utf-8", errors="replace") if value is not None else None


TIMING_HEADERS = {
    "stt_ms": "X-Processing-Time-STT",
    "llm_ms": "X-Processing-Time-LLM",
    "tts_ms": "X-Processing-Time-TTS",
    "total_ms": "X-Processing-Time-Total",
}


def timing_headers(headers: Mapping[str, str]) -> dict[str, float]:
    """The X-Processing-Time-* headers of /dialogue in milliseconds (absent or malformed ones left out)."""
    timings: dict[str, float] = {}
    for key, name in TIMING_HEADERS.items():
        try:
            timings[key] = float(headers[name])
        except (KeyError, ValueError):
            continue
    return timings


def error_body(status: int, content: bytes, headers: Mapping[str, str]) -> ErrorBody:
    """The typed error of a non-200 response; a body that is not the contract's JSON becomes HTTP_<status>."""
    try:
        return ErrorBody.model_validate_json(content)
    except ValidationError:
        text = content.decode("utf-8", errors="replace").strip()
        retry = headers.get("Retry-After")
        return ErrorBody(
            error_code=f"HTTP_{status}",
            message=text[:300] or "the server answered with an error and no error body",
            retry_after=int(retry) if retry and retry.isdigit() else None,
            request_id=headers.get("X-Request-ID", "unknown"),
        )


@dataclass(frozen=True)
class WavInfo:
    channels: int
    sample_width: int
    sample_rate: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def wav_info(data: bytes) -> WavInfo:
    try:
        with wave.open(io.BytesIO(data)) as wav:
            return WavInfo(wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise ProtocolError(f"not a PCM WAV file: {error}") from error


def join_wavs(parts: list[bytes]) -> list[bytes]:
    """One WAV holding every part back to back when they share a format (the usual case: one voice per
    reply), else the parts unchanged: nothing is resampled."""
    if len(parts) <= 1:
        return list(parts)
    formats = {(info.channels, info.sample_width, info.sample_rate) for info in map(wav_info, parts)}
    if len(formats) != 1:
        return list(parts)
    channels, sample_width, sample_rate = formats.pop()
    out = io.BytesIO()
    with wave.open(out, "wb") as joined:
        joined.setnchannels(channels)
        joined.setsampwidth(sample_width)
        joined.setframerate(sample_rate)
        for part in parts:
            with wave.open(io.BytesIO(part)) as wav:
                joined.writeframes(wav.readframes(wav.getnframes()))
    return [out.getvalue()]


def event_wav(event: StreamAudioEvent) -> bytes:
    """The sentence's WAV file, checked to be one."""
    try:
        wav = base64.b64decode(event.audio, validate=True)
    except binascii.Error as error:
        raise ProtocolError(f"sentence {event.index}: audio is not base64: {error}") from error
    wav_info(wav)
    return wav


def output_paths(output: Path, count: int) -> list[Path]:
    """reply.wav for one file; reply-0.wav, reply-1.wav, ... for several."""
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{index}{output.suffix or '.wav'}") for index in range(count)]


def format_timings(timings: Mapping[str, float]) -> str:
    names = [("stt_ms", "STT"), ("llm_ms", "LLM"), ("tts_ms", "TTS"), ("total_ms", "total")]
    return "  ".join(f"{label} {timings[key]:.0f} ms" for key, label in names if key in timings)


# ---------------------------------------------------------------- playback (best effort)


def player_command() -> tuple[list[str], bool] | None:
    """A command that plays a WAV, and whether it reads it from stdin (else it takes a file name)."""
    if shutil.which("aplay"):
        return ["aplay", "-q", "-"], True
    if shutil.which("ffplay"):
        return ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "-i", "pipe:0"], True
    if shutil.which("afplay"):  # macOS; reads files only
        return ["afplay"], False
    return None


class Player:
    """Plays WAVs one after another on a background thread, in the order they were queued."""

    def __init__(self, command: list[str], stdin: bool, warn: Callable[[str], None]) -> None:
        self._command, self._stdin, self._warn = command, stdin, warn
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="player", daemon=True)
        self._thread.start()

    def play(self, wav: bytes) -> None:
        self._queue.put(wav)

    def finish(self) -> None:
        """Waits until everything queued has been played."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (wav := self._queue.get()) is not None:
            try:
                if self._stdin:
                    subprocess.run(self._command, input=wav, check=True, capture_output=True)
                else:
                    with tempfile.NamedTemporaryFile(suffix=".wav") as file:
                        file.write(wav)
                        file.flush()
                        subprocess.run([*self._command, file.name], check=True, capture_output=True)
            except subprocess.CalledProcessError as error:
                self._warn(
                    f"--play: {self._command[0]} failed: {error.stderr.decode(errors='replace').strip()}"
                )
            except OSError as error:
                self._warn(f"--play: {self._command[0]} failed: {error}")
            else:
                continue
            while self._queue.get() is not None:  # give up on the rest, but let finish() return
                pass
            return


def make_player(warn: Callable[[str], None]) -> Player | None:
    found = player_command()
    if found is None:
        warn(
            "--play: no audio player found (install alsa-utils for aplay, or ffmpeg for ffplay); not playing"
        )
        return None
    return Player(*found, warn=warn)


# ---------------------------------------------------------------- the two routes


@dataclass
class Request:
    url: str
    audio: bytes
    filename: str
    language: str | None
    session_id: str | None
    api_key: str | None
    voice: str | None = None

    def files(self) -> dict[str, tuple[str, bytes, str]]:
        return {"audio": (self.filename, self.audio, "application/octet-stream")}

    def data(self) -> dict[str, str]:
        data: dict[str, str] = {}
        if self.language and self.language != "auto":
            data["language"] = self.language
        if self.session_id:
            data["session_id"] = self.session_id
        if self.voice:
            data["voice"] = self.voice
        return data

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class Console:
    def __init__(self, out: TextIO, err: TextIO) -> None:
        self.out, self.err = out, err

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def warn(self, text: str) -> None:
        print(text, file=self.err, flush=True)


def ask(client: httpx.Client, request: Request, output: Path, play: bool, console: Console) -> None:
    """POST /dialogue: the whole reply as one WAV, the text and timings in headers."""
    response = client.post(
        request.url.rstrip("/") + DIALOGUE_PATH,
        files=request.files(),
        data=request.data(),
        headers=request.headers(),
    )
    if response.status_code != 200:
        raise ServerError(
            error_body(response.status_code, response.content, response.headers), response.status_code
        )
    headers = response.headers
    output.write_bytes(response.content)
    language = headers.get("X-Input-Language", "?")
    console.say(f"you said ({language}): {read_text_header(headers, 'X-Input-Text') or ''}")
    console.say(f"reply: {read_text_header(headers, 'X-Output-Text') or ''}")
    duration = headers.get("X-Output-Duration", "?")
    console.say(f"audio: {output} ({duration} s at {headers.get('X-Output-Sample-Rate', '?')} Hz)")
    console.say(f"timings: {format_timings(timing_headers(headers))}")
    console.say(f"request: {headers.get('X-Request-ID', '?')}" + _session_note(headers.get("X-Session-ID")))
    if play and (player := make_player(console.warn)):
        player.play(response.content)
        player.finish()


def ask_streaming(client: httpx.Client, request: Request, output: Path, play: bool, console: Console) -> None:
    """POST /dialogue/stream: print each event as it arrives, play sentences as they come, save the audio."""
    player = make_player(console.warn) if play else None
    started = time.perf_counter()
    first_audio_s: float | None = None
    sentences: list[bytes] = []
    done: StreamDoneEvent | None = None

    def elapsed() -> str:
        return f"[{time.perf_counter() - started:6.2f} s]"

    try:
        with client.stream(
            "POST",
            request.url.rstrip("/") + STREAM_PATH,
            files=request.files(),
            data=request.data(),
            headers=request.headers(),
        ) as response:
            session_id = response.headers.get("X-Session-ID")
            if response.status_code != 200:
                content = response.read()
                raise ServerError(
                    error_body(response.status_code, content, response.headers), response.status_code
                )
            for event in iter_events(response.iter_bytes()):
                if isinstance(event, StreamTranscriptEvent):
                    console.say(
                        f"{elapsed()} you said ({event.language}, {event.input_duration_s:.2f} s): "
                        f"{event.text}  [STT {event.stt_ms:.0f} ms]"
                    )
                elif isinstance(event, StreamAudioEvent):
                    wav = event_wav(event)
                    if first_audio_s is None:
                        first_audio_s = time.perf_counter() - started
                    sentences.append(wav)
                    console.say(
                        f"{elapsed()} sentence {event.index} ({event.duration_s:.2f} s): {event.text}"
                    )
                    if player:
                        player.play(wav)
                elif isinstance(event, StreamDoneEvent):
                    done = event
                else:
                    raise ServerError(event)
    finally:
        files = join_wavs(sentences)
        for path, data in zip(output_paths(output, len(files)), files, strict=True):
            path.write_bytes(data)
            console.say(f"audio: {path} ({wav_info(data).duration_s:.2f} s)")
        if player:
            player.finish()
    if done is None:
        raise ProtocolError("the stream ended without a 'done' or 'error' event")
    meta = done.metadata
    client_first = f"{first_audio_s * 1000:.0f} ms" if first_audio_s is not None else "none"
    console.say(f"reply: {meta.output_text}")
    console.say(f"time to first audio: server {meta.time_to_first_audio_ms:.0f} ms, here {client_first}")
    timings = {"stt_ms": meta.stt_ms, "llm_ms": meta.llm_ms, "tts_ms": meta.tts_ms, "total_ms": meta.total_ms}
    plural = "" if meta.sentences == 1 else "s"
    console.say(f"timings: {format_timings(timings)}  ({meta.sentences} sentence{plural})")
    console.say(f"request: {meta.request_id}" + _session_note(session_id))


def _session_note(session_id: str | None) -> str:
    return f"  session: {session_id}" if session_id else ""


# ---------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m voice_orchestrator.client",
        description="Ask the voice dialogue server a spoken question; save (and play) its spoken answer.",
    )
    parser.add_argument("question", type=Path, help="the recorded question (WAV, FLAC, OGG, MP3, WebM, M4A)")
    parser.add_argument(
        "-o", "--output", type=Path, default=Path("reply.wav"), help="where the reply WAV goes"
    )
    parser.add_argument(
        "--url", default=os.environ.get("VOICE_URL", DEFAULT_URL), help="the server's base URL"
    )
    parser.add_argument("--language", help="the question's language (ja, en, ...; default: detect)")
    parser.add_argument("--session", help="a session id: follow-up questions keep the conversation's context")
    parser.add_argument("--voice", help="a voice of the server's TTS (e.g. jm_kumo); default: its own")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("VOICE_API_KEY"),
        help="sent as a Bearer token (env VOICE_API_KEY)",
    )
    parser.add_argument(
        "--stream", action="store_true", help="use the streaming route: sentences as they come"
    )
    parser.add_argument("--play", action="store_true", help="play the reply with aplay, ffplay or afplay")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the server")
    return parser


def main(
    argv: list[str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    console = Console(out or sys.stdout, err or sys.stderr)
    try:
        audio = args.question.read_bytes()
    except OSError as error:
        console.warn(f"cannot read {args.question}: {error.strerror or error}")
        return EXIT_USAGE
    request = Request(
        args.url, audio, args.question.name, args.language, args.session, args.api_key, args.voice
    )
    timeout = httpx.Timeout(args.timeout, connect=10.0)
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            (ask_streaming if args.stream else ask)(client, request, args.output, args.play, console)
    except ServerError as error:
        console.warn(f"error: {error.describe()}")
        return EXIT_SERVER_ERROR
    except httpx.TimeoutException:
        console.warn(f"error: no answer from {args.url} within {args.timeout:.0f} s")
        return EXIT_CONNECTION
    except httpx.HTTPError as error:
        console.warn(f"error: cannot reach {args.url}: {error}")
        return EXIT_CONNECTION
    except ProtocolError as error:
        console.warn(f"error: unexpected answer from {args.url}: {error}")
        return EXIT_CONNECTION
    except OSError as error:
        console.warn(f"error: {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.warn("interrupted")
        return 130
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
