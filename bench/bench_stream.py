"""Time to first audio vs full reply: the streaming route against the WAV route, same clips, one run.

    python -m bench.bench_stream --url http://127.0.0.1:8000      # against a running `serve run`
    python -m bench.bench_stream --serve                          # starts Ray + the app itself

Requests alternate between the two routes, one at a time. Client-side clocks: for /dialogue the first audio
is the whole WAV (time to first audio = full reply); for /dialogue/stream, time to first audio is the arrival
of the first `audio` event and the full reply is the `done` event. The questions ask for more than one
sentence, where streaming pays (the packaged toy model answers 「京都について…」 with its two-sentence
few-shot example, and the moon in two sentences of its own); "sentences" is the median count per reply.
"""

from __future__ import annotations

import json
import time
from urllib.parse import unquote

import httpx

from bench.bench_dialogue import _given, bench_arguments, percentile, served_app
from bench.clips import english_clip, japanese_clip
from voice_orchestrator.sentences import SentenceSplitter

ROUTE = "/api/orchestrator/dialogue"


def full_reply(client: httpx.Client, url: str, clip: bytes, language: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    response = client.post(url + ROUTE, files={"audio": ("q.wav", clip)}, data={"language": language})
    response.raise_for_status()
    elapsed = (time.perf_counter() - started) * 1000.0
    splitter = SentenceSplitter()
    reply = unquote(response.headers["X-Output-Text"])
    return elapsed, elapsed, len(splitter.feed(reply) + splitter.flush())


def streamed_reply(client: httpx.Client, url: str, clip: bytes, language: str) -> tuple[float, float, int]:
    started = time.perf_counter()
    first_audio: float | None = None
    sentences = 0
    files = {"audio": ("q.wav", clip)}
    with client.stream("POST", url + ROUTE + "/stream", files=files, data={"language": language}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.strip():
                continue
            event = json.loads(line)
            if event["type"] == "audio":
                sentences += 1
                if first_audio is None:
                    first_audio = (time.perf_counter() - started) * 1000.0
            elif event["type"] == "error":
                raise RuntimeError(f"{event['error_code']}: {event['message']}")
    done = (time.perf_counter() - started) * 1000.0
    return first_audio or done, done, sentences


def main() -> None:
    args = bench_arguments(__doc__, requests=8)
    clips = {
        "ja 「京都について教えてください。」": (japanese_clip("京都について教えてください。"), "ja"),
        "en 'Tell me about the moon.'": (english_clip("Tell me about the moon."), "en"),
    }
    modes = {"/dialogue (WAV)": full_reply, "/dialogue/stream": streamed_reply}
    with served_app() if args.serve else _given(args.url) as url, httpx.Client(timeout=180) as client:
        header = ("clip", "route", "first audio p50/p95 ms", "full reply p50/p95 ms", "sentences")
        print(f"{header[0]:<42}{header[1]:<20}{header[2]:>24}{header[3]:>24}{header[4]:>11}")
        for name, (clip, language) in clips.items():
            for measure in modes.values():
                measure(client, url, clip, language)  # warm the path
            results: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in modes}
            for _ in range(args.requests):
                for mode, measure in modes.items():
                    results[mode].append(measure(client, url, clip, language))
            for mode, rows in results.items():
                first = [row[0] for row in rows]
                full = [row[1] for row in rows]
                sentences = sorted(row[2] for row in rows)[len(rows) // 2]
                print(
                    f"{name:<42}{mode:<20}"
                    f"{f'{percentile(first, 50):.0f} / {percentile(first, 95):.0f}':>24}"
                    f"{f'{percentile(full, 50):.0f} / {percentile(full, 95):.0f}':>24}{sentences:>11}"
                )


if __name__ == "__main__":
    main()
