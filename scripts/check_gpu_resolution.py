"""Does the `gpu` extra still resolve, and to what the GPU notes assume? (make check-gpu-resolution, in CI)

    python scripts/check_gpu_resolution.py [--report PATH] [--timeout SECONDS]

Runs pip's resolver on '.[gpu]' against PyPI with --dry-run (nothing is installed) and without this
machine's pip configuration (local indexes, find-links, constraints), as an operator's node would, then checks
the result:
  - the pinned engines (vLLM, faster-whisper, coqui-tts) resolve;
  - torch is a CUDA 13 build: the node needs NVIDIA driver >= 580 (cluster/README.md says so);
  - CTranslate2 is 4.x, a CUDA 12 build, and nvidia-cublas-cu12 12.x resolves beside torch's CUDA 13 libraries
    (voice_orchestrator/engines/cuda.py preloads it).
A change to any of these fails, so a dependency bump cannot silently change what a GPU node needs.
--use-feature=fast-deps reads each wheel's metadata with HTTP range requests (~100 MB instead of ~4.5 GB of
wheels where the index serves no separate metadata files).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PINNED = {"vllm": "0.32.0", "faster-whisper": "1.2.1", "coqui-tts": "0.28.0"}
TORCH_CUDA_MAJOR = 13  # torch's CUDA generation the driver note (>= 580) is written for
CTRANSLATE2_MAJOR = "4"  # CTranslate2 4.x loads libcublas.so.12


def resolve(report: Path, timeout: float) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "--isolated",  # no PIP_* environment variables
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--use-feature=fast-deps",
        "--report",
        str(report),
        f"{ROOT}[gpu]",
    ]
    # No configuration files either: this machine's local wheels (a CPU torch) would change the answer.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull}
    subprocess.run(command, env=env, check=True, timeout=timeout)


def versions(report: dict[str, Any]) -> dict[str, str]:
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}


def problems_with(resolved: dict[str, str]) -> tuple[list[str], list[str]]:
    """(facts, problems) about a resolution (name -> version)."""
    facts, problems = [], []
    for name, version in PINNED.items():
        if resolved.get(name) != version:
            problems.append(f"{name} resolved to {resolved.get(name)}, the profile is tested with {version}")
    torch = resolved.get("torch")
    # torch pins CUDA's libraries through cuda-toolkit (13.x) or, in older releases, nvidia-*-cuXX wheels.
    cuda = resolved.get("cuda-toolkit") or resolved.get("nvidia-cublas") or ""
    cuda_major = int(cuda.split(".")[0]) if cuda[:1].isdigit() else None
    if torch is None:
        problems.append("torch did not resolve")
    elif cuda_major != TORCH_CUDA_MAJOR:
        problems.append(
            f"torch {torch} brings CUDA {cuda or 'nothing'} libraries, not CUDA {TORCH_CUDA_MAJOR}: update "
            "the driver requirement in cluster/README.md and voice_orchestrator/engines/cuda.py"
        )
    else:
        facts.append(f"torch {torch} with CUDA {cuda} libraries: NVIDIA driver >= 580 on every GPU node")
    ctranslate2 = resolved.get("ctranslate2", "")
    cublas12 = resolved.get("nvidia-cublas-cu12", "")
    if not ctranslate2.startswith(CTRANSLATE2_MAJOR + "."):
        problems.append(
            f"ctranslate2 resolved to {ctranslate2 or 'nothing'}: check which cuBLAS it loads (strings "
            "libctranslate2*.so | grep libcublas) and update the gpu extra and engines/cuda.py"
        )
    elif not cublas12.startswith("12."):
        problems.append(
            f"nvidia-cublas-cu12 resolved to {cublas12 or 'nothing'}: CTranslate2 4.x needs cuBLAS 12"
        )
    else:
        facts.append(f"ctranslate2 {ctranslate2} (CUDA 12) with nvidia-cublas-cu12 {cublas12}")
    facts.append(f"{len(resolved)} distributions in all")
    return facts, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--report", type=Path, help="keep pip's JSON report here")
    parser.add_argument("--timeout", type=float, default=540.0, help="seconds pip may take (default 540)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        report_path = args.report or Path(scratch) / "report.json"
        started = time.perf_counter()
        try:
            resolve(report_path, args.timeout)
        except subprocess.TimeoutExpired:
            print(f"the gpu extra did not resolve within {args.timeout:.0f} s", file=sys.stderr)
            return 1
        except subprocess.CalledProcessError as error:
            print(f"pip could not resolve the gpu extra (exit status {error.returncode})", file=sys.stderr)
            return 1
        report = json.loads(report_path.read_text())
    facts, problems = problems_with(versions(report))
    elapsed = time.perf_counter() - started
    print(f"gpu extra resolved in {elapsed:.0f} s (pip {report['pip_version']}, --dry-run)")
    for fact in facts:
        print(f"ok       {fact}")
    for problem in problems:
        print(f"PROBLEM  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
