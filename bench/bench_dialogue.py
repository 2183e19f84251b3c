"""Per-stage and end-to-end latency of /api/orchestrator/dialogue, and the orchestration overhead.

    python -m bench.bench_dialogue --url http://127.0.0.1:8000      # against a running `serve run`
    python -m bench.bench_dialogue --serve                          # serves serve_config.yaml itself
    python -m bench.bench_dialogue --serve --versus VOICE_STT__FITTED_WINDOW=false   # and a variant, in turn

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
from contextlib import ExitStack, contextmanager

import httpx

from bench.clips import english_clip, japanese_clip
from bench.serving import ROOT, served

ROUTE = "/api/orchestrator/dialogue"
STAGES = ("STT", "LLM", "TTS")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(
    urls: dict[str, str], clip: bytes, language: str | None, requests: int
) -> dict[str, dict[str, list[float]]]:
    """Per served version: the stage times, server total, end to end and overhead of each request. The
    versions are asked in turn, one request at a time, so a noisy machine weighs on all alike."""
    names = (*STAGES, "server total", "e2e", "overhead")
    columns: dict[str, dict[str, list[float]]] = {version: {name: [] for name in names} for version in urls}
    data = {"language": language} if language else None
    with httpx.Client(timeout=120) as client:
        for url in urls.values():
            client.post(f"{url}{ROUTE}", files={"audio": ("q.wav", clip)}, data=data)  # warm the path
        for _ in range(requests):
            for version, url in urls.items():
                started = time.perf_counter()
                response = client.post(f"{url}{ROUTE}", files={"audio": ("q.wav", clip)}, data=data)
                e2e = (time.perf_counter() - started) * 1000.0
                response.raise_for_status()
                stages = [float(response.headers[f"X-Processing-Time-{stage}"]) for stage in STAGES]
                measured = columns[version]
                for stage, value in zip(STAGES, stages, strict=True):
                    measured[stage].append(value)
                measured["server total"].append(float(response.headers["X-Processing-Time-Total"]))
                measured["e2e"].append(e2e)
                measured["overhead"].append(e2e - sum(stages))
    return columns


def p50_p95(values: list[float]) -> str:
    return f"{percentile(values, 50):.0f} / {percentile(values, 95):.0f}"


def print_table(name: str, versions: dict[str, dict[str, list[float]]]) -> None:
    """One row per column, one p50 / p95 cell per version, and the p50 ratio of each later version to the
    first."""
    labels = list(versions)
    first = versions[labels[0]]
    print(f"\n{name}  (n={len(first['e2e'])} per version)")
    header = "".join(f"{label:>26}" for label in labels)
    ratios = "".join(f"{'p50 ' + label + ' / ' + labels[0]:>30}" for label in labels[1:])
    print(f"  {'ms':<14}{header}{ratios}")
    for column in first:
        cells = "".join(f"{p50_p95(versions[label][column]):>26}" for label in labels)
        base = percentile(first[column], 50)
        ratio = "".join(
            f"{percentile(versions[label][column], 50) / base if base else float('nan'):>30.2f}"
            for label in labels[1:]
        )
        print(f"  {column:<14}{cells}{ratio}")
    for label in labels:
        columns = versions[label]
        share = statistics.median(o / e for o, e in zip(columns["overhead"], columns["e2e"], strict=True))
        print(f"  overhead / e2e, median ({label}): {share:.1%}")


@contextmanager
def served_app(env: dict[str, str] | None = None, port: int = 8011) -> Iterator[str]:
    """The working tree's embedded profile, as `serve run serve_config.yaml` serves it."""
    with served(ROOT, port, env) as url:
        yield url


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """--url / --serve / --requests, shared by the benchmarks that post clips one at a time."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--serve", action="store_true", help="serve the working tree's serve_config.yaml")
    parser.add_argument("--requests", type=int, default=10)
    return parser


def bench_arguments(doc: str | None, requests: int) -> argparse.Namespace:
    parser = bench_parser(doc)
    parser.set_defaults(requests=requests)
    return parser.parse_args()


def add_versus(parser: argparse.ArgumentParser, example: str) -> None:
    parser.add_argument(
        "--versus",
        nargs="+",
        metavar="KEY=VALUE",
        help="with --serve: also serve the profile with these settings overridden (environment variables, "
        f"e.g. {example}) and ask both in turn",
    )


@contextmanager
def served_versions(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Iterator[dict[str, str]]:
    """The apps to ask, by version: --url's, or the working tree served (--serve) and, with --versus, a
    second one beside it with those settings overridden."""
    if args.versus and not args.serve:
        parser.error("--versus needs --serve")
    versus = dict(pair.split("=", 1) for pair in args.versus or [])
    with ExitStack() as stack:
        if not args.serve:
            yield {"default": args.url}
            return
        urls = {"default": stack.enter_context(served_app())}
        if versus:
            print("variant:", " ".join(f"{key}={value}" for key, value in versus.items()))
            urls["variant"] = stack.enter_context(served_app(versus, port=8012))
        yield urls


def main() -> None:
    parser = bench_parser(__doc__)
    add_versus(parser, "VOICE_STT__FITTED_WINDOW=false")
    args = parser.parse_args()
    clips = {
        "ja 「今日の天気は？」 (language detected)": (japanese_clip(), None),
        "ja 「今日の天気は？」 (language=ja)": (japanese_clip(), "ja"),
        "en 'What is the capital of Japan?' (detected)": (english_clip(), None),
        "en 'What is the capital of Japan?' (language=en)": (english_clip(), "en"),
    }
    with served_versions(parser, args) as urls:
        results = {name: measure(urls, clip, lang, args.requests) for name, (clip, lang) in clips.items()}
    for name, versions in results.items():
        print_table(name, versions)
    # The price of detecting the language instead of being told, in the same run (target: at most 1.10).
    for language, (detected, given) in {"ja": (0, 1), "en": (2, 3)}.items():
        names = list(results)
        for version in results[names[detected]]:
            ratio = percentile(results[names[detected]][version]["e2e"], 50) / percentile(
                results[names[given]][version]["e2e"], 50
            )
            print(f"{language} e2e p50, detected / given ({version}): {ratio:.2f}")


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    main()
