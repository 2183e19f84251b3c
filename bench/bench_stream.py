"""Time to first audio vs full reply: the streaming route against the WAV route, same clips, one run.

    python -m bench.bench_stream --url http://127.0.0.1:8000      # against a running `serve run`
    python -m bench.bench_stream --serve                          # starts Ray + the app itself

Requests alternate between the two routes, one at a time. Client-side clocks: for /dialogue the first audio
is the whole WAV (time to first audio = full reply); for /dialogue/stream, time to first audio is the arrival
of the first `audio` event and the full reply is the `done` event.

- "after STT" subtracts the server's speech recognition time (the `X-Processing-Time-STT` header, the
  transcript event's `stt_ms`): recognition comes first on both routes; streaming can shorten only the rest.
- "ratio" is streamed first audio over the whole WAV's time (p50s; below 1 = sooner).
- "stalls" is the silence a listener would hear after the first audio, when a chunk arrives after the
  previous ones have finished playing (0 for a whole WAV).
- "chunks" is the median number of spoken pieces per reply (sentences, or a long first sentence cut at its
  comma), counted on the reply text for /dialogue.

The questions ask for more than a one-word answer, where streaming can pay; how many sentences come back is
up to the model.
"""

from __future__ import annotations

import json
import statistics
import time
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote

import httpx

from bench.bench_dialogue import _given, bench_arguments, percentile, served_app
from bench.clips import english_clip, japanese_clip
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.settings import OrchestratorSettings

ROUTE = "/api/orchestrator/dialogue"
DEFAULTS = OrchestratorSettings()
QUESTIONS = [
    ("ja", "京都について教えてください。"),
    ("ja", "おすすめの観光地はどこですか？"),
    ("en", "Tell me about the moon."),
    ("en", "Tell me about Japan."),
]


@dataclass
class Sample:
    first_audio_ms: float
    full_reply_ms: float
    stt_ms: float
    chunks: int
    stalls_ms: float = 0.0


def spoken_chunks(reply: str) -> int:
    """How many pieces the streaming route would speak this reply in (with the default settings)."""
    splitter = SentenceSplitter(DEFAULTS.stream_soft_split_chars, DEFAULTS.stream_first_chunk_chars)
    return len(splitter.feed(reply) + splitter.flush())


def full_reply(client: httpx.Client, url: str, clip: bytes, language: str) -> Sample:
    started = time.perf_counter()
    response = client.post(url + ROUTE, files={"audio": ("q.wav", clip)}, data={"language": language})
    response.raise_for_status()
    elapsed = (time.perf_counter() - started) * 1000.0
    reply = unquote(response.headers["X-Output-Text"])
    stt_ms = float(response.headers["X-Processing-Time-STT"])
    return Sample(elapsed, elapsed, stt_ms, spoken_chunks(reply))


def streamed_reply(client: httpx.Client, url: str, clip: bytes, language: str) -> Sample:
    started = time.perf_counter()
    first_audio: float | None = None
    stt_ms = 0.0
    chunks = 0
    playhead = 0.0  # when the audio received so far will have finished playing, client clock (ms)
    stalls = 0.0
    files = {"audio": ("q.wav", clip)}
    with client.stream("POST", url + ROUTE + "/stream", files=files, data={"language": language}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.strip():
                continue
            event = json.loads(line)
            if event["type"] == "transcript":
                stt_ms = float(event["stt_ms"])
            elif event["type"] == "audio":
                chunks += 1
                arrived = (time.perf_counter() - started) * 1000.0
                if first_audio is None:
                    first_audio = playhead = arrived
                stalls += max(0.0, arrived - playhead)
                playhead = max(playhead, arrived) + float(event["duration_s"]) * 1000.0
            elif event["type"] == "error":
                raise RuntimeError(f"{event['error_code']}: {event['message']}")
    done = (time.perf_counter() - started) * 1000.0
    return Sample(first_audio or done, done, stt_ms, chunks, stalls)


def p50_p95(values: list[float]) -> str:
    return f"{percentile(values, 50):.0f} / {percentile(values, 95):.0f}"


def left(text: str, width: int) -> str:
    """Pad to a terminal width: Japanese characters take two columns."""
    columns = sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)
    return text + " " * max(1, width - columns)


def main() -> None:
    args = bench_arguments(__doc__, requests=8)
    modes = {"/dialogue (WAV)": full_reply, "/dialogue/stream": streamed_reply}
    columns = ("first audio", "after STT", "full reply", "ratio", "stalls ms", "chunks")
    with served_app() if args.serve else _given(args.url) as url, httpx.Client(timeout=180) as client:
        print(f"{'clip':<38}{'route':<18}" + "".join(f"{c:>15}" for c in columns))
        print(f"{'':<56}{'p50 / p95 ms':>15}{'p50 / p95 ms':>15}{'p50 / p95 ms':>15}")
        for language, question in QUESTIONS:
            clip = japanese_clip(question) if language == "ja" else english_clip(question)
            for measure in modes.values():
                measure(client, url, clip, language)  # warm the path
            results: dict[str, list[Sample]] = {mode: [] for mode in modes}
            for _ in range(args.requests):
                for mode, measure in modes.items():
                    results[mode].append(measure(client, url, clip, language))
            whole = percentile([s.full_reply_ms for s in results["/dialogue (WAV)"]], 50)
            for mode, samples in results.items():
                first = [s.first_audio_ms for s in samples]
                after_stt = [s.first_audio_ms - s.stt_ms for s in samples]
                full = [s.full_reply_ms for s in samples]
                stalls = percentile([s.stalls_ms for s in samples], 50)
                chunks = statistics.median_low(s.chunks for s in samples)
                ratio = percentile(first, 50) / whole
                clip_name = left(f"{language} {question}", 38)
                print(
                    f"{clip_name}{mode:<18}{p50_p95(first):>15}{p50_p95(after_stt):>15}{p50_p95(full):>15}"
                    f"{ratio:>15.2f}{stalls:>15.0f}{chunks:>15}"
                )


if __name__ == "__main__":
    main()
