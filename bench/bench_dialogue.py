"""Per-stage and end-to-end latency of /api/orchestrator/dialogue, and the orchestration overhead.

    python -m bench.bench_dialogue --url http://127.0.0.1:8000      # against a running `serve run`
    python -m bench.bench_dialogue --serve                          # starts Ray + the app itself

For each clip it posts the question `--requests` times, one at a time, and prints p50/p95 of the stage times
the server reports (X-Processing-Time-*), the server's total, the client-measured end to end, and the
overhead = end to end - (STT + LLM + TTS): audio decoding, Serve's proxy and handle hops, WAV encoding and
HTTP, as milliseconds and as a share of end to end. All columns come from the same requests.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bench.clips import english_clip, japanese_clip

ROUTE = "/api/orchestrator/dialogue"
STAGES = ("STT", "LLM", "TTS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(url: str, clip: bytes, language: str | None, requests: int) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {name: [] for name in (*STAGES, "server total", "e2e", "overhead")}
    data = {"language": language} if language else None
    with httpx.Client(timeout=120) as client:
        client.post(f"{url}{ROUTE}", files={"audio": ("q.wav", clip)}, data=data)  # warm the path
        for _ in range(requests):
            started = time.perf_counter()
            response = client.post(f"{url}{ROUTE}", files={"audio": ("q.wav", clip)}, data=data)
            e2e = (time.perf_counter() - started) * 1000.0
            response.raise_for_status()
            stages = [float(response.headers[f"X-Processing-Time-{stage}"]) for stage in STAGES]
            for stage, value in zip(STAGES, stages, strict=True):
                columns[stage].append(value)
            columns["server total"].append(float(response.headers["X-Processing-Time-Total"]))
            columns["e2e"].append(e2e)
            columns["overhead"].append(e2e - sum(stages))
    return columns


def print_table(name: str, columns: dict[str, list[float]]) -> None:
    print(f"\n{name}  (n={len(columns['e2e'])})")
    print(f"  {'':<14}{'p50 ms':>10}{'p95 ms':>10}")
    for column, values in columns.items():
        print(f"  {column:<14}{percentile(values, 50):>10.1f}{percentile(values, 95):>10.1f}")
    ratio = statistics.median(o / e for o, e in zip(columns["overhead"], columns["e2e"], strict=True))
    print(f"  overhead ratio (median of overhead / e2e): {ratio:.1%}")


@contextmanager
def served_app() -> Iterator[str]:
    import ray
    from ray import serve

    from graph import build_app

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": 8011})
        serve.run(build_app(), name="voice", route_prefix="/")
        yield "http://127.0.0.1:8011"
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def bench_arguments(doc: str | None, requests: int) -> argparse.Namespace:
    """--url / --serve / --requests, shared by the benchmarks that post clips one at a time."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--serve", action="store_true", help="start Ray and the app in this process")
    parser.add_argument("--requests", type=int, default=requests)
    return parser.parse_args()


def main() -> None:
    args = bench_arguments(__doc__, requests=10)
    clips = {
        "ja 「今日の天気は？」 (language detected)": (japanese_clip(), None),
        "ja 「今日の天気は？」 (language=ja)": (japanese_clip(), "ja"),
        "en 'What is the capital of Japan?' (detected)": (english_clip(), None),
    }
    with served_app() if args.serve else _given(args.url) as url:
        for name, (clip, language) in clips.items():
            print_table(name, measure(url, clip, language, args.requests))


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
