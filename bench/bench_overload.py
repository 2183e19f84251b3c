"""Overload and soak: a concurrency sweep, then twice the dialogue limit for a minute.

    python -m bench.bench_overload --serve            # starts Ray + the app (embedded profile) itself
    python -m bench.bench_overload --url http://127.0.0.1:8000 --limit 5
    python -m bench.bench_overload --serve --sweep 1 2 --rounds 3 --soak-seconds 0 \\
        --versus VOICE_TTS__SPINNING=always           # and a variant, step by step in turn

Each step keeps `concurrency` clients posting spoken questions (Japanese and English, alternating) back
to back, and prints throughput of served dialogues, p50/p95/p99 latency of the 200s, the share answered
429, any other status, and the peak resident memory of every Serve replica on this machine (VmHWM from /proc).
With `--versus`, a second app with those settings overridden is served beside the first, and each step runs
on one, then the other, `--rounds` times, so a noisy machine weighs on both alike; the soak is the first's.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.bench_dialogue import add_versus, percentile, served_versions
from bench.clips import english_clip, japanese_clip

ROUTE = "/api/orchestrator/dialogue"


async def run_step(
    url: str, clips: list[bytes], concurrency: int, seconds: float
) -> tuple[Counter[int], list[float]]:
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        turn = index
        while time.monotonic() < deadline:
            clip = clips[turn % len(clips)]
            turn += 1
            started = time.perf_counter()
            response = await http.post(ROUTE, files={"audio": ("q.wav", clip)})
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000.0)
            elif response.status_code == 429:
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))

    async with httpx.AsyncClient(base_url=url, timeout=300) as http:
        await asyncio.gather(*(client(index, http) for index in range(concurrency)))
    return statuses, latencies


def replica_peak_rss_mib() -> dict[str, float]:
    peaks: dict[str, float] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            if "ServeReplica:" not in title:
                continue
            status = (proc / "status").read_text()
        except OSError:
            continue
        name = title.split("ServeReplica:", 1)[1].strip().split(".")[0]  # drop a method suffix
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[name] = max(peaks.get(name, 0.0), int(line.split()[1]) / 1024.0)
    return peaks


def report(label: str, seconds: float, statuses: Counter[int], latencies: list[float]) -> None:
    total = sum(statuses.values())
    served = statuses.get(200, 0)
    refused = statuses.get(429, 0)
    other = {code: count for code, count in statuses.items() if code not in (200, 429)}
    line = f"{label:<22}{served / seconds:>8.2f}{total:>7}{refused / max(total, 1):>8.0%}"
    if latencies:
        line += "".join(f"{percentile(latencies, q):>9.0f}" for q in (50, 95, 99))
    else:
        line += f"{'-':>9}{'-':>9}{'-':>9}"
    print(line + (f"   other: {other}" if other else ""), flush=True)


async def main_async(
    urls: dict[str, str], limit: int, sweep: list[int], step_s: float, soak_s: float, rounds: int
) -> None:
    clips = [japanese_clip(), english_clip()]
    print(f"{'step':<22}{'ok/s':>8}{'reqs':>7}{'429':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for concurrency in sweep:
        totals = {version: (Counter[int](), list[float]()) for version in urls}
        for _ in range(rounds):
            for version, url in urls.items():
                statuses, latencies = await run_step(url, clips, concurrency, step_s)
                totals[version][0].update(statuses)
                totals[version][1].extend(latencies)
        for version, (statuses, latencies) in totals.items():
            label = f"concurrency {concurrency}" + (f" {version}" if len(urls) > 1 else "")
            report(label, step_s * rounds, statuses, latencies)
    if soak_s > 0:
        statuses, latencies = await run_step(urls["default"], clips, 2 * limit, soak_s)
        report(f"soak {2 * limit} for {soak_s:.0f} s", soak_s, statuses, latencies)
    print("\npeak RSS per replica (MiB):")
    for name, mib in sorted(replica_peak_rss_mib().items()):
        print(f"  {name:<32}{mib:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--serve", action="store_true", help="start Ray and the app in this process")
    parser.add_argument("--limit", type=int, default=5, help="the app's max_concurrent_dialogues")
    parser.add_argument("--sweep", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--soak-seconds", type=float, default=60.0, help="0: no soak")
    parser.add_argument("--rounds", type=int, default=1, help="each step this many times (per version)")
    add_versus(parser, "VOICE_TTS__SPINNING=always")
    args = parser.parse_args()
    with served_versions(parser, args) as urls:
        asyncio.run(
            main_async(urls, args.limit, args.sweep, args.step_seconds, args.soak_seconds, args.rounds)
        )


if __name__ == "__main__":
    main()
