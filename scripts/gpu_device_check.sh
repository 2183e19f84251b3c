#!/usr/bin/env bash
# Engine-level CUDA checks for the GPU machine (issue 15), ≤ 60 s, no network, stdlib + torch only.
# Run it from anywhere in a checkout (it loads the modules by path from the repository root):
#   bash scripts/gpu_device_check.sh
# It loads voice_orchestrator/engines/cuda.py and install_check.py by path (they need only the standard library),
# so nothing of the project has to be installed on the device. Each check prints PASS/FAIL/SKIP; exit status 1
# if any FAIL.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
PY=${PY:-python3}
export PYTHONDONTWRITEBYTECODE=1

timeout 55 "$PY" - <<'PY'
import importlib.util
import os
import subprocess
import sys
import textwrap
import time

started = time.monotonic()
failures = 0


def report(name: str, ok: bool | None, detail: str) -> None:
    global failures
    status = "SKIP" if ok is None else "PASS" if ok else "FAIL"
    failures += ok is False
    print(f"{status}  {name}: {detail}", flush=True)


def load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


cuda = load("vo_cuda", "voice_orchestrator/engines/cuda.py")
install_check = load("vo_install_check", "voice_orchestrator/install_check.py")

# 1. The driver, as cuda.py sees it on a real GPU: no cause for complaint.
d = cuda.diagnose_cuda()
report(
    "diagnose_cuda on this node",
    d.libcuda_found and (d.device_count or 0) >= 1 and cuda.likely_causes(d, "13.0") == [],
    f"kernel {d.kernel_driver}, driver CUDA {d.driver_cuda}, devices {d.device_count}, "
    f"init_error {d.init_error}, causes {cuda.likely_causes(d, '13.0')}",
)
report(
    "driver >= 580 (CUDA 13 wheels)",
    d.driver_cuda is not None and d.driver_cuda >= (13, 0),
    f"driver supports CUDA {d.driver_cuda}",
)

# 2. A process that hides the GPUs (what a replica without num_gpus may get): the Coqui engine's exact check
#    and message (coqui.py), and the diagnosis naming CUDA_VISIBLE_DEVICES.
probe = textwrap.dedent(
    """
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("vo_cuda", "voice_orchestrator/engines/cuda.py")
    cuda = importlib.util.module_from_spec(spec); sys.modules["vo_cuda"] = cuda; spec.loader.exec_module(cuda)
    import torch
    device = "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(cuda.no_gpu_message(f"tts.device is {device!r}", torch.version.cuda, f"torch {torch.__version__}"))
    else:
        print("torch sees a GPU")
    """
)
hidden = subprocess.run(
    [sys.executable, "-c", probe],
    env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
    capture_output=True,
    text=True,
    timeout=40,
)
message = hidden.stdout.strip()
report(
    "no-GPU message with CUDA_VISIBLE_DEVICES=''",
    "sees no CUDA GPU" in message and "CUDA_VISIBLE_DEVICES is ''" in message,
    message or hidden.stderr.strip()[-300:],
)

# 3. torch on the GPU, and the message path does not trigger when a GPU is there.
try:
    import torch

    ok = torch.cuda.is_available()
    free, total = torch.cuda.mem_get_info() if ok else (0, 0)
    report(
        "torch sees the GPU",
        ok,
        f"torch {torch.__version__} (CUDA {torch.version.cuda}), {torch.cuda.get_device_name(0) if ok else '-'}, "
        f"free {free / 2**30:.1f} of {total / 2**30:.1f} GiB",
    )
except Exception as error:  # noqa: BLE001
    report("torch sees the GPU", False, repr(error))

# 4. CTranslate2's cuBLAS 12: preload from nvidia-cublas-cu12 if this Python has it, then a by-name dlopen.
paths = cuda.cublas12_paths()
if paths:
    loaded = cuda.preload_cuda_libraries()
    report("preload libcublas.so.12", cuda.library_loadable("libcublas.so.12"), f"loaded {loaded}")
else:
    report(
        "preload libcublas.so.12",
        None,
        f"nvidia-cublas-cu12 not installed here; by-name libcublas.so.12 loadable anyway: "
        f"{cuda.library_loadable('libcublas.so.12')}",
    )

# 5. What torch.compile needs at run time (issue 15, point 8): a compiler and Python.h, then a real compile.
problems = install_check.gpu_toolchain_problems()
report("C compiler and Python.h", not problems, "; ".join(problems) or "both present")
left = 50 - (time.monotonic() - started)
if left < 15:
    report("torch.compile on CUDA", None, f"only {left:.0f} s left")
else:
    compiled = subprocess.run(
        [
            sys.executable,
            "-c",
            "import torch\n"
            "f = torch.compile(lambda x: torch.sin(x) * 2 + 1)\n"
            "x = torch.randn(1024, device='cuda')\n"
            "print(bool(torch.allclose(f(x), torch.sin(x) * 2 + 1)))",
        ],
        capture_output=True,
        text=True,
        timeout=left - 3,
    )
    report(
        "torch.compile on CUDA (Triton builds its C launcher)",
        compiled.stdout.strip().endswith("True"),
        (compiled.stdout.strip() or compiled.stderr.strip())[-300:],
    )

print(f"{failures} failure(s) in {time.monotonic() - started:.0f} s")
sys.exit(1 if failures else 0)
PY
