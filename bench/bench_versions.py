"""The same benchmark on two versions of the server, one run: an earlier commit and the working tree.

    python -m bench.bench_versions --before HEAD~3 --requests 8

Both versions are served at once, each by its own `serve run serve_config.yaml` (its own Ray instance and
port) from its own source tree (the commit is exported with `git archive`; PYTHONPATH puts that tree ahead of
the installed package, in the replicas too). The questions of bench_stream then go to both versions and both
dialogue routes in turn, one request at a time, so a noisy machine weighs on both alike; then
/v1/audio/speech (pcm) on a Japanese and an English text, likewise alternating. Printed: p50/p95 of the
client-measured whole reply (/dialogue), first audio (/dialogue/stream), and the speech route's first and
last byte per version, and the after/before ratios.
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.bench_dialogue import percentile
from bench.bench_stream import QUESTIONS, Sample, full_reply, left, streamed_reply
from bench.clips import english_clip, japanese_clip
from bench.serving import ROOT, served, source_tree

PORTS = {"before": 8013, "after": 8014}
# /v1/audio/speech, pcm: request sent -> first and last body byte (the sentences stream as synthesised).
SPEECH_TEXTS = {
    "en speech, 3 sentences": "The weather is fine today. It will rain tomorrow. Take an umbrella with you.",
    "ja speech, 2 sentences": "今日はいい天気ですね。明日は雨が降るでしょう。",
}


def speech_reply(client: httpx.Client, url: str, text: str) -> tuple[float, float]:
    """(first byte, last byte) in ms of one /v1/audio/speech answer."""
    started = time.perf_counter()
    first: float | None = None
    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    with client.stream("POST", url + "/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        for _ in response.iter_bytes():
            first = first or (time.perf_counter() - started) * 1000.0
    last = (time.perf_counter() - started) * 1000.0
    return first or last, last


def measure(urls: dict[str, str], requests: int) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per version and question: whole-reply times of /dialogue and first-audio times of /dialogue/stream."""
    results: dict[str, dict[str, dict[str, list[float]]]] = {name: {} for name in urls}
    with httpx.Client(timeout=180) as client:
        for language, question in QUESTIONS:
            clip = japanese_clip(question) if language == "ja" else english_clip(question)
            samples: dict[str, dict[str, list[Sample]]] = {name: {"whole": [], "first": []} for name in urls}
            for url in urls.values():
                full_reply(client, url, clip, language)  # warm the path
            for _ in range(requests):
                for name, url in urls.items():
                    samples[name]["whole"].append(full_reply(client, url, clip, language))
                    samples[name]["first"].append(streamed_reply(client, url, clip, language))
            for name in urls:
                results[name][f"{language} {question}"] = {
                    "whole": [sample.full_reply_ms for sample in samples[name]["whole"]],
                    "first": [sample.first_audio_ms for sample in samples[name]["first"]],
                }
        for label, text in SPEECH_TEXTS.items():
            for url in urls.values():
                speech_reply(client, url, text)  # warm the path
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in urls}
            for _ in range(requests):
                for name, url in urls.items():
                    times[name].append(speech_reply(client, url, text))
            for name in urls:
                results[name][label] = {
                    "first": [first for first, _ in times[name]],
                    "whole": [last for _, last in times[name]],
                }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", required=True, help="a git ref, e.g. HEAD~3")
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    with (
        source_tree(args.before) as before_tree,
        served(before_tree, PORTS["before"]) as before_url,
        served(ROOT, PORTS["after"]) as after_url,
    ):
        measured = measure({"before": before_url, "after": after_url}, args.requests)
    print(f"{'clip':<38}{'metric':<26}{'before p50/p95':>18}{'after p50/p95':>18}{'after/before':>14}")
    for clip in measured["before"]:
        speech = "speech" in clip
        for metric, label in (
            ("whole", "last byte" if speech else "/dialogue whole reply"),
            ("first", "first byte" if speech else "/stream first audio"),
        ):
            before, after = measured["before"][clip][metric], measured["after"][clip][metric]
            cells = [f"{percentile(v, 50):.0f} / {percentile(v, 95):.0f}" for v in (before, after)]
            ratio = percentile(after, 50) / percentile(before, 50)
            print(f"{left(clip, 38)}{label:<26}{cells[0]:>18}{cells[1]:>18}{ratio:>14.2f}")


if __name__ == "__main__":
    main()
