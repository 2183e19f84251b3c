"""The same benchmark on two versions of the server, one run: an earlier commit and the working tree.

    python -m bench.bench_versions --before HEAD~3 --requests 8

Both versions are served at once, each by its own `serve run serve_config.yaml` (its own Ray instance and
port) from its own source tree (the commit is exported with `git archive`; PYTHONPATH puts that tree ahead of
the installed package, in the replicas too). The questions of bench_stream then go to both versions and both
dialogue routes in turn, one request at a time, so a noisy machine weighs on both alike. Printed: p50/p95 of
the client-measured whole reply (/dialogue) and first audio (/dialogue/stream) per version, and the
after/before ratios.
"""

from __future__ import annotations

import argparse

import httpx

from bench.bench_dialogue import percentile
from bench.bench_stream import QUESTIONS, Sample, full_reply, left, streamed_reply
from bench.clips import english_clip, japanese_clip
from bench.serving import ROOT, served, source_tree

PORTS = {"before": 8013, "after": 8014}


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
        for metric, label in (("whole", "/dialogue whole reply"), ("first", "/stream first audio")):
            before, after = measured["before"][clip][metric], measured["after"][clip][metric]
            cells = [f"{percentile(v, 50):.0f} / {percentile(v, 95):.0f}" for v in (before, after)]
            ratio = percentile(after, 50) / percentile(before, 50)
            print(f"{left(clip, 38)}{label:<26}{cells[0]:>18}{cells[1]:>18}{ratio:>14.2f}")


if __name__ == "__main__":
    main()
