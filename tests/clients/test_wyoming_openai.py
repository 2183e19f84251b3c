"""Home Assistant's way in: `wyoming-openai` 0.8.0, the Wyoming <-> OpenAI proxy, pointed at the real app's
/v1, driven by the `wyoming` package's client as Home Assistant's Wyoming integration drives one.

The proxy runs from its own venv (it needs Python >= 3.12; scripts/venv_wyoming_openai.sh) as

    python -m wyoming_openai --uri tcp://127.0.0.1:PORT --languages en ja
        --stt-openai-url BASE/v1 --stt-openai-key none --stt-models whisper-1
        --tts-openai-url BASE/v1 --tts-openai-key none --tts-models tts-1
        --tts-voices jf_alpha en_US-joe-medium

and must: answer `describe` with an ASR and a TTS program; transcribe the spoken Japanese 「今日の天気は？」
and an English question sent as Home Assistant sends them (transcribe with the language, audio-start 16 kHz
s16 mono, chunks of 1024 samples, audio-stop) to text with the question's word; synthesise Japanese with
`jf_alpha` and English with `en_US-joe-medium` as audio-start, chunks, audio-stop, as long as the text takes
to say.

The trade-off this pins down: 0.8.0 advertises every voice for every language of `--languages` (it cannot
know that ours speak one each), so Home Assistant lists `jf_alpha` among the English voices, and a request
that names no voice gets the first of `--tts-voices`. English text on `jf_alpha` is a 400 from our
/v1/audio/speech; the proxy turns it into a Wyoming `error` event ("Text-to-speech synthesis failed") and
closes the connection without an audio-stop: a failure the client sees at once, not a hang and not silence
passed off as speech. 0.8.0 also advertises no streaming for this command line
(`supports_transcript_streaming` and `supports_synthesize_streaming` false): that takes
`--stt-streaming-models` / `--tts-streaming-models`.

    bash scripts/venv_wyoming_openai.sh
    VOICE_WYOMING_OPENAI_TEST=1 .venv/bin/python -m pytest -ra tests/clients/test_wyoming_openai.py

Run by `make test-wyoming-openai`; in `make test-main` it skips (VOICE_WYOMING_OPENAI_TEST unset), as the
wheel and multinode tests do, so the tier that builds the proxy's venv is the one place it runs. The
proxy's interpreter is $VOICE_WYOMING_OPENAI_PYTHON (default .venv-wyoming-openai/bin/python); missing, the
tests skip with the command that makes it.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeVoice

from bench.serving import free_ports
from tests.integration.wyoming_client import pcm16k, send_audio

ROOT = Path(__file__).resolve().parents[2]
PROXY_PYTHON = Path(os.environ.get("VOICE_WYOMING_OPENAI_PYTHON", ROOT / ".venv-wyoming-openai/bin/python"))

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.environ.get("VOICE_WYOMING_OPENAI_TEST") != "1",
        reason="drives wyoming-openai 0.8.0 from its own Python 3.12 venv: run by `make test-wyoming-openai`",
    ),
]

HOST = "127.0.0.1"
LANGUAGES = ("en", "ja")
VOICES = ("jf_alpha", "en_US-joe-medium")  # the first is the proxy's default voice
READY_TIMEOUT_S = 60.0  # the proxy's start: imports, three backend probes of /v1 (404s), the socket
PROBE_TIMEOUT_S = 5.0  # one `describe` while waiting for it to start
CONNECT_TIMEOUT_S = 10.0
EVENT_TIMEOUT_S = 120.0  # one event: a transcription or a synthesis behind it on 2 busy cores
TURN_TIMEOUT_S = 180.0  # a whole exchange
STOP_TIMEOUT_S = 10.0

JAPANESE = "今日はいい天気ですね。"
ENGLISH = "The weather is nice today. Let's go for a walk."
TTS_FAILED = "Text-to-speech synthesis failed"  # wyoming-openai's error event for any failed synthesis
REFUSAL = "speaks ja only"  # our 400 for English text on a Japanese voice, as the proxy logs it


@dataclass(frozen=True)
class Proxy:
    port: int
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@asynccontextmanager
async def _wyoming(proxy: Proxy) -> AsyncIterator[AsyncTcpClient]:
    """One connection, as Home Assistant opens one per request; every read is bounded."""
    client = AsyncTcpClient(HOST, proxy.port, connect_timeout=CONNECT_TIMEOUT_S, read_timeout=EVENT_TIMEOUT_S)
    await client.connect()
    try:
        yield client
    finally:
        await client.disconnect()


async def _read_until(client: AsyncTcpClient, last: Callable[[Event], bool]) -> list[Event]:
    """The events up to and including the first for which `last` holds, or up to the connection's close."""
    events: list[Event] = []
    async with asyncio.timeout(TURN_TIMEOUT_S):
        while (event := await client.read_event()) is not None:
            events.append(event)
            if last(event):
                break
    return events


async def _describe(port: int) -> Info:
    proxy = Proxy(port, Path("/dev/null"))
    async with _wyoming(proxy) as client:
        await client.write_event(Describe().event())
        events = await _read_until(client, lambda event: Info.is_type(event.type))
    assert events, "the connection closed without an answer to describe"
    assert Info.is_type(events[-1].type), events
    return Info.from_event(events[-1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def proxy(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    if not PROXY_PYTHON.exists():
        pytest.skip(f"no {PROXY_PYTHON}: bash scripts/venv_wyoming_openai.sh (make test-wyoming-openai)")
    port = free_ports(1)[0]
    log = tmp_path_factory.mktemp("wyoming-openai") / "proxy.log"
    command = [
        str(PROXY_PYTHON), "-m", "wyoming_openai", "--uri", f"tcp://{HOST}:{port}", "--languages", *LANGUAGES,
        "--stt-openai-url", f"{base_url}/v1", "--stt-openai-key", "none", "--stt-models", "whisper-1",
        "--tts-openai-url", f"{base_url}/v1", "--tts-openai-key", "none", "--tts-models", "tts-1",
        "--tts-voices", *VOICES,
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    made = Proxy(port, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert process.poll() is None, f"the proxy exited ({process.returncode}):\n{made.log_tail()}"
            try:
                asyncio.run(asyncio.wait_for(_describe(port), PROBE_TIMEOUT_S))
                break
            except (OSError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    message = f"no answer to describe in {READY_TIMEOUT_S} s:\n{made.log_tail()}"
                    raise AssertionError(message) from exc
                time.sleep(0.25)
        yield made
    finally:
        _stop(process)


async def test_describe_lists_asr_and_tts_and_every_voice_for_every_language(proxy: Proxy) -> None:
    info = await _describe(proxy.port)

    # Home Assistant uses the first installed ASR and TTS programs.
    assert all(program.installed for program in [*info.asr, *info.tts]), info
    assert [model.name for program in info.asr for model in program.models] == ["whisper-1"], info.asr
    assert all(set(model.languages) == set(LANGUAGES) for program in info.asr for model in program.models)
    voices = {voice.name: voice for program in info.tts for voice in program.voices}
    assert list(voices) == list(VOICES), info.tts
    # Every voice for every language: our voices speak one each (GET /v1/audio/voices), the proxy cannot know.
    assert all(set(voice.languages) == set(LANGUAGES) for voice in voices.values()), info.tts
    # No streaming on this command line: Home Assistant sends one `synthesize` and waits for the whole audio.
    assert not any(program.supports_transcript_streaming for program in info.asr)
    assert not any(program.supports_synthesize_streaming for program in info.tts)


@pytest.mark.parametrize(
    ("question", "language"), [("japanese_question", "ja"), ("english_question", "en")], ids=["ja", "en"]
)
async def test_home_assistant_style_transcription(
    proxy: Proxy,
    request: pytest.FixtureRequest,
    record_property: Callable[[str, object], None],
    question: str,
    language: str,
) -> None:
    wav, word = request.getfixturevalue(question)
    async with _wyoming(proxy) as client:
        await client.write_event(Transcribe(language=language).event())
        await send_audio(client, pcm16k(wav))  # as Home Assistant's pipeline streams it
        stopped = time.monotonic()
        events = await _read_until(
            client, lambda event: Transcript.is_type(event.type) or Error.is_type(event.type)
        )

    assert events, f"the connection closed without a transcript\n{proxy.log_tail()}"
    assert Transcript.is_type(events[-1].type), f"{events}\n{proxy.log_tail()}"
    transcript = Transcript.from_event(events[-1])
    record_property("transcript", transcript.text)
    record_property("audio_stop_to_transcript_s", round(time.monotonic() - stopped, 3))
    assert word in transcript.text, transcript


def _morae(text: str) -> int:
    """Morae of a Japanese text, from Open JTalk's katakana reading (small kana join the mora before them)."""
    import pyopenjtalk

    reading = pyopenjtalk.g2p(text, kana=True)  # a str for one text, a list of them for a list
    assert isinstance(reading, str), reading
    return len(re.findall(r"[ァ-ヴー]", reading)) - len(re.findall(r"[ァィゥェォャュョヮ]", reading))


def _speaking_seconds(text: str, language: str) -> tuple[float, float]:
    """How long the text may plausibly take to say: Japanese at 4-12 morae/s, English at 1.5-6 words/s,
    plus up to a second of leading and trailing silence and pauses at the punctuation."""
    if language == "ja":
        units, slowest, fastest = _morae(text), 4.0, 12.0
    else:
        units, slowest, fastest = len(text.split()), 1.5, 6.0
    assert units > 0, text
    return units / fastest, units / slowest + 1.0


async def _synthesize(
    proxy: Proxy, text: str, voice: str | None, last: Callable[[Event], bool]
) -> list[Event]:
    """Home Assistant's plain (non-streaming) synthesis: `synthesize`, then the events up to `last`."""
    async with _wyoming(proxy) as client:
        named = SynthesizeVoice(name=voice) if voice is not None else None
        await client.write_event(Synthesize(text=text, voice=named).event())
        return await _read_until(client, last)


@pytest.mark.parametrize(
    ("text", "language", "voice"),
    [(JAPANESE, "ja", VOICES[0]), (ENGLISH, "en", VOICES[1])],
    ids=["ja-jf_alpha", "en-en_US-joe-medium"],
)
async def test_home_assistant_style_synthesis(
    proxy: Proxy, record_property: Callable[[str, object], None], text: str, language: str, voice: str
) -> None:
    events = await _synthesize(proxy, text, voice, lambda event: event.type in ("audio-stop", "error"))

    kinds = [event.type for event in events]
    assert kinds, f"the connection closed without audio\n{proxy.log_tail()}"
    assert kinds[0] == "audio-start", f"{kinds}\n{proxy.log_tail()}"
    assert kinds[-1] == "audio-stop", kinds
    assert set(kinds[1:-1]) == {"audio-chunk"}, kinds
    start = AudioStart.from_event(events[0])
    chunks = [AudioChunk.from_event(event) for event in events[1:-1]]
    assert {(chunk.rate, chunk.width, chunk.channels) for chunk in chunks} == {
        (start.rate, start.width, start.channels)
    }
    assert (start.width, start.channels) == (2, 1)
    pcm = b"".join(chunk.audio for chunk in chunks)
    seconds = len(pcm) / (start.rate * start.width * start.channels)
    shortest, longest = _speaking_seconds(text, language)
    record_property("audio_s", round(seconds, 3))
    record_property("plausible_s", f"{shortest:.2f}-{longest:.2f}")
    assert shortest < seconds < longest, (
        f"{seconds:.2f} s of audio for {text!r}, expected {shortest:.2f}-{longest:.2f}"
    )
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    assert float(np.sqrt(np.mean(speech**2))) > 0.01  # not silence


def _refusals_logged(proxy: Proxy) -> int:
    """The proxy's ERROR lines that carry our 400 for English text on a Japanese voice."""
    lines = proxy.log.read_text(errors="replace").splitlines()
    return sum(line.startswith("ERROR:") and REFUSAL in line for line in lines)


@pytest.mark.parametrize("voice", ["jf_alpha", None], ids=["jf_alpha", "no-voice-named"])
async def test_english_on_a_japanese_voice_is_an_error_event_not_a_hang(
    proxy: Proxy, record_property: Callable[[str, object], None], voice: str | None
) -> None:
    """The proxy offers `jf_alpha` for English, and is what a request naming no voice gets (the first of
    --tts-voices); our server refuses English text on it (400), and the client is told at once."""
    refusals = _refusals_logged(proxy)
    started = time.monotonic()
    events = await _synthesize(proxy, ENGLISH, voice, lambda event: False)  # read to the connection's close
    elapsed = time.monotonic() - started
    record_property("synthesize_to_close_s", round(elapsed, 3))

    # An error event, then the connection closes: no audio-start, no audio-stop that would pass for success.
    kinds = [event.type for event in events]
    assert kinds == ["error"], f"{kinds}\n{proxy.log_tail()}"
    assert Error.from_event(events[0]).text == TTS_FAILED
    assert elapsed < 30.0, elapsed  # a 400 is quick: nothing was synthesised
    # It was our 400 (naming the voices that can read the text) that the proxy logged, not a fault of its own.
    assert _refusals_logged(proxy) == refusals + 1, proxy.log_tail()
