"""Two builds of llama-cpp-python side by side in one run, on the packaged language models, as the
LanguageModel replica runs them (our LlamaCppEngine, 2 threads).

    python -m bench.bench_llama_build --build native=/path/native.whl --build portable=/path/portable.whl

Each wheel is unpacked into a directory of its own, and each measurement round starts one fresh process per
build with that directory ahead of the venv on PYTHONPATH, builds alternating, so a noisy machine weighs on
both alike. Per model and build, medians over the rounds:
  - first token: the bench questions through `LlamaCppEngine.stream` (the few-shot / chat prompt, a warm
    KV cache, as in a dialogue), and the whole reply;
  - prefill: a ~300-token prompt evaluated on a cleared cache (tokens/s);
  - decode: 96 tokens generated with the end-of-text token banned (tokens/s after the first).
The CPU (model name, AVX-512, AMX) and each build's compiled features are printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from voice_orchestrator.engines.llama_build import cpu_flags, describe_build

MODELS = {"gemma-3-270m": "ja", "smollm2-135m-instruct": "en"}
QUESTIONS = {
    "ja": ["今日の天気は？", "日本の首都はどこですか？", "おすすめの朝ごはんは？"],
    "en": ["What is the capital of France?", "What is the weather like today?", "Name a fruit."],
}
LONG_PROMPT = "The quick brown fox jumps over the lazy dog. " * 30
DECODE_TOKENS = 96


def _worker(cache_dir: Path) -> dict[str, Any]:
    """One round in this process: every model, every measure (run with a build's directory on the path)."""
    import asyncio

    import llama_cpp

    from voice_orchestrator.engines.llama_build import build_features
    from voice_orchestrator.engines.llama_cpp import LlamaCppEngine
    from voice_orchestrator.protocol import ReplyRequest
    from voice_orchestrator.settings import LanguageModelSettings

    results: dict[str, Any] = {
        "features": sorted(build_features(llama_cpp.llama_print_system_info().decode())),
        "llama_cpp": str(Path(llama_cpp.__file__).parent),
    }
    for model, language in MODELS.items():
        started = time.perf_counter()
        engine = LlamaCppEngine(LanguageModelSettings(packaged_model=model), cache_dir)  # type: ignore[arg-type]
        load_s = time.perf_counter() - started
        asyncio.run(engine.probe())
        first, whole = [], []
        for question in QUESTIONS[language]:
            first_ms, whole_ms = asyncio.run(_ask(engine, ReplyRequest(text=question, language=language)))
            first.append(first_ms)
            whole.append(whole_ms)
        llm: Any = engine._llm  # the raw model: fixed-size prefill and decode
        prompt = llm.tokenize(LONG_PROMPT.encode())
        llm.reset()
        began = time.perf_counter()
        llm.eval(prompt)
        prefill_s = time.perf_counter() - began
        llm.reset()
        stamps = []
        for _ in llm.create_completion(
            LONG_PROMPT[:200],
            max_tokens=DECODE_TOKENS,
            temperature=0.0,
            stream=True,
            logit_bias={llm.token_eos(): -1e9},
        ):
            stamps.append(time.perf_counter())
        decode = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0
        results[model] = {
            "load_s": load_s,
            "first_token_ms": statistics.median(first),
            "reply_ms": statistics.median(whole),
            "prefill_tok_s": len(prompt) / prefill_s,
            "decode_tok_s": decode,
        }
    return results


async def _ask(engine: Any, request: Any) -> tuple[float, float]:
    """(first delta, whole reply) in ms for one question."""
    began = time.perf_counter()
    first_at = None
    async for _ in engine.stream(request):
        first_at = first_at or time.perf_counter()
    ended = time.perf_counter()
    return ((first_at or ended) - began) * 1000.0, (ended - began) * 1000.0


def _unpack(name: str, wheel: str, into: Path) -> Path:
    target = into / name
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps"]
    subprocess.run([*pip, "--target", str(target), wheel], check=True)
    return target


def _round(target: Path, cache_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_llama_build", "--worker", "--cache-dir", str(cache_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the round with {target} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _cpu() -> str:
    name = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    amx = "AMX" if "amx_int8" in flags else "no AMX"
    return f"{name}, {os.cpu_count()} cores, {'AVX-512' if 'avx512f' in flags else 'no AVX-512'}, {amx}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--build", action="append", default=[], help="NAME=WHEEL (twice or more)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "voice-orchestrator")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.cache_dir)))
        return
    builds = dict(item.split("=", 1) for item in args.build)
    if len(builds) < 2:
        parser.error("name two builds: --build before=WHEEL --build after=WHEEL")
    with tempfile.TemporaryDirectory(prefix="bench-llama-") as scratch:
        targets = {name: _unpack(name, wheel, Path(scratch)) for name, wheel in builds.items()}
        rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in builds}
        for number in range(args.rounds):
            for name, target in targets.items():
                rounds[name].append(_round(target, args.cache_dir))
            print(f"round {number + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(f"CPU: {_cpu()}; {args.rounds} rounds, builds alternating; medians")
    for name, results in rounds.items():
        features = frozenset(results[0]["features"])
        print(f"  {name}: {describe_build(features)} [{' '.join(sorted(features))}]")
    names = list(builds)
    measures = ("load_s", "first_token_ms", "reply_ms", "prefill_tok_s", "decode_tok_s")
    header = f"| model | measure | {' | '.join(names)} | {names[-1]} / {names[0]} |"
    print(header)
    print("|" + "---|" * (len(names) + 3))
    for model in MODELS:
        for measure in measures:
            values = [statistics.median(r[model][measure] for r in rounds[name]) for name in names]
            cells = " | ".join(f"{value:.3g}" if measure == "load_s" else f"{value:.0f}" for value in values)
            print(f"| {model} | {measure} | {cells} | {values[-1] / values[0]:.2f} |")


if __name__ == "__main__":
    main()
