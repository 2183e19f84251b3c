"""The llama.cpp build: the installed one is portable, the install builds it so, and a crash while generating
fails the install check with its cause instead of killing a Serve replica."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from subprocess import PIPE

from voice_orchestrator.engines import llama_build
from voice_orchestrator.engines.llama_build import (
    MACHINE_SPECIFIC_FEATURES,
    PORTABLE_FEATURES,
    amx_repacking_crashes,
    build_features,
    cpu_flags,
    describe_build,
    generation_problem,
)

ROOT = Path(__file__).resolve().parents[2]
# llama.cpp's system info: a -march=native build on a Sapphire Rapids Xeon, and the portable build.
NATIVE_AMX = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | AVX512 = 1 | "
    "AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | "
    "REPACK = 1 | "
)
PORTABLE = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | OPENMP = 1 | "
    "REPACK = 1 | "
)
SAPPHIRE_RAPIDS = "flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512_vnni amx_bf16 amx_tile amx_int8\n"
ZEN2 = "processor\t: 0\nflags\t\t: fpu vme sse4_2 avx avx2 fma f16c bmi2\n"
SEGFAULT = "import os, signal; print('loading', flush=True); os.kill(os.getpid(), signal.SIGSEGV)"


def test_the_installed_llama_cpp_is_the_portable_build() -> None:
    """What install.sh put here: AVX2 and friends, nothing only some CPUs have (a -march=native build on
    this machine would report its AVX-512 here and fail)."""
    features = llama_build.installed_build_features()
    assert features >= PORTABLE_FEATURES, features
    assert not features & MACHINE_SPECIFIC_FEATURES, features
    assert describe_build(features).startswith("portable")


def test_the_install_builds_the_pinned_version_portably() -> None:
    script = (ROOT / "scripts" / "llama_cpp_wheel.sh").read_text()
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    version = re.search(r"^VERSION=(\S+)", script, re.MULTILINE)
    assert version is not None
    assert f"llama-cpp-python=={version.group(1)}" in pinned["embedded"]
    flags = " ".join(re.findall(r'PORTABLE\+?="([^"]*)"', script))
    for setting in ("GGML_NATIVE=OFF", "GGML_AVX2=ON", "GGML_AVX512=OFF", "GGML_AMX_INT8=OFF"):
        assert f"-D{setting}" in flags
    assert "--no-cache-dir" in script  # pip's wheel cache ignores CMAKE_ARGS
    install = (ROOT / "scripts" / "install.sh").read_text()
    assert 'bash scripts/llama_cpp_wheel.sh "$py"' in install
    assert install.index("llama_cpp_wheel.sh") < install.index('install -e ".[$EXTRAS]"')
    assert "scripts/llama_cpp_wheel.sh" in (ROOT / "scripts" / "venv_pipecat.sh").read_text()


# Stands in for `python -m pip wheel ... -w DIR`: counts its calls, takes a second, writes a wheel (or fails).
FAKE_PIP = """#!/usr/bin/env bash
echo call >>"$FAKE_CALLS"
[[ -z "${FAKE_FAIL:-}" ]] || exit 1
while [[ $1 != -w ]]; do shift; done
sleep 1
echo wheel >"$2/llama_cpp_python-0.3.36-cp311-cp311-linux_x86_64.whl"
"""


def run_wheel_script(tmp_path: Path, copies: int, **env: str) -> list[subprocess.CompletedProcess[str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PIP)
    fake.chmod(0o755)
    environment = {
        **os.environ,
        "VOICE_WHEEL_CACHE": str(tmp_path / "wheels"),
        "VOICE_LLAMA_CMAKE_ARGS": "-DTEST=ON",
        "FAKE_CALLS": str(tmp_path / "calls"),
        **env,
    }
    script = [str(ROOT / "scripts" / "llama_cpp_wheel.sh"), str(fake)]
    started = [
        subprocess.Popen(["bash", *script], env=environment, stdout=PIPE, stderr=PIPE, text=True)
        for _ in range(copies)
    ]
    return [
        subprocess.CompletedProcess(p.args, p.wait(timeout=60), *p.communicate(timeout=60)) for p in started
    ]


def test_two_installs_at_once_build_the_wheel_once_and_both_get_it(tmp_path: Path) -> None:
    """A CI clone and a checkout installing at once on one machine once raced in the shared wheel directory:
    the loser's script failed and its install compiled llama.cpp natively instead."""
    first, second = run_wheel_script(tmp_path, 2)
    assert (first.returncode, second.returncode) == (0, 0), (first.stderr, second.stderr)
    wheel = Path(first.stdout.strip())
    assert second.stdout.strip() == str(wheel)
    assert wheel.read_text() == "wheel\n"
    assert (wheel.parent / "CMAKE_ARGS").read_text() == "-DTEST=ON\n"
    assert (tmp_path / "calls").read_text().count("call") == 1
    assert [p.name for p in (tmp_path / "wheels").iterdir() if ".tmp." in p.name] == []
    (again,) = run_wheel_script(tmp_path, 1)  # built once, then taken as it is
    assert again.stdout.strip() == str(wheel)
    assert (tmp_path / "calls").read_text().count("call") == 1


def test_a_failed_build_fails_the_script_and_leaves_no_wheel(tmp_path: Path) -> None:
    (failed,) = run_wheel_script(tmp_path, 1, FAKE_FAIL="1")
    assert failed.returncode != 0
    assert failed.stdout == ""
    assert [p.name for p in (tmp_path / "wheels").iterdir() if not p.name.endswith(".lock")] == []
    install = (ROOT / "scripts" / "install.sh").read_text()
    # set -e sees a failed substitution only in an assignment of its own, not inside pip's arguments.
    assert 'llama_wheel=$(bash scripts/llama_cpp_wheel.sh "$py")' in install
    assert 'install --force-reinstall --no-deps "$llama_wheel"' in install


def test_build_features_are_read_from_llamas_system_info() -> None:
    assert build_features(NATIVE_AMX) >= {"AVX512", "AMX_INT8", "AVX2", "REPACK"}
    assert "AVX512" not in build_features(PORTABLE)
    assert build_features("CPU : AVX = 0 | AVX2 = 1 |") == {"AVX2"}
    assert describe_build(build_features(NATIVE_AMX)).startswith("compiled for one kind of CPU")


def test_amx_repacking_is_the_hazard_only_with_amx_on_both_sides() -> None:
    native, portable = build_features(NATIVE_AMX), build_features(PORTABLE)
    assert amx_repacking_crashes(native, cpu_flags(SAPPHIRE_RAPIDS))
    assert not amx_repacking_crashes(portable, cpu_flags(SAPPHIRE_RAPIDS))
    assert not amx_repacking_crashes(native, cpu_flags(ZEN2))
    assert cpu_flags("no flags line") == frozenset()


def test_a_child_that_segfaults_is_an_install_problem_with_its_cause_and_fix() -> None:
    problem, said = generation_problem(
        [sys.executable, "-c", SEGFAULT],
        "the packaged language model gemma-3-270m",
        build=build_features(NATIVE_AMX),
        cpu=cpu_flags(SAPPHIRE_RAPIDS),
    )
    assert problem is not None
    assert said == "loading"
    assert problem.startswith("the packaged language model gemma-3-270m crashed with SIGSEGV")
    assert "AMX amx_bf16 amx_int8 amx_tile" in problem
    assert "llama.cpp#20824" in problem
    assert "GGML_NATIVE=OFF" in problem


def test_sigill_points_at_a_build_made_for_another_cpu() -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    problem, _ = generation_problem(
        [sys.executable, "-c", code], "model", build=build_features(NATIVE_AMX), cpu=cpu_flags(ZEN2)
    )
    assert problem is not None
    assert "SIGILL" in problem
    assert "compiled on another machine" in problem


def test_a_failing_or_silent_child_and_a_good_one() -> None:
    failing = [sys.executable, "-c", "import sys; sys.exit('no model file')"]
    problem, _ = generation_problem(failing, "model")
    assert problem is not None
    assert "exit 1" in problem
    assert "no model file" in problem
    problem, _ = generation_problem([sys.executable, "-c", "import time; time.sleep(5)"], "model", 0.5)
    assert problem == "model: no tokens within 0.5 s"
    assert generation_problem([sys.executable, "-c", "print('8 tokens')"], "model") == (None, "8 tokens")


def test_each_packaged_model_generates_in_a_child_process() -> None:
    """The real check install.sh ends with, on this machine's build (a crash here would fail it)."""
    facts, problems = llama_build.packaged_model_problems(["smollm2-135m-instruct"])
    assert problems == []
    assert re.fullmatch(r"smollm2-135m-instruct generates here: \d+ tokens in .*", facts[0]), facts


def test_model_parameters_are_set_for_one_load_only() -> None:
    import llama_cpp.llama_cpp as bindings

    from voice_orchestrator.engines.llama_cpp import _model_params

    assert bindings.llama_model_default_params().use_extra_bufts
    with _model_params(use_extra_bufts=False):
        assert not bindings.llama_model_default_params().use_extra_bufts
    assert bindings.llama_model_default_params().use_extra_bufts
