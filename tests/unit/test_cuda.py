"""CUDA helpers: CTranslate2's cuBLAS 12 is found and preloaded, and "no GPU" errors name the likely cause.

The preload test builds two tiny shared libraries named like cuBLAS 12 (same sonames, the second needing the
first, RPATH $ORIGIN as in NVIDIA's wheel), installs them as a fake `nvidia-cublas-cu12` distribution, and
checks in a fresh interpreter that a by-name dlopen("libcublas.so.12") — what CTranslate2 does — fails before
`preload_cuda_libraries()` and reaches the wheel's copy after it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from voice_orchestrator.engines import cuda
from voice_orchestrator.engines.cuda import CudaDiagnosis, likely_causes, no_gpu_message

LIB_DIR = "nvidia/cublas/lib"


def _fake_cublas_distribution(root: Path, with_libraries: bool = True) -> Path:
    """A site-packages directory holding an `nvidia-cublas-cu12` distribution like NVIDIA's wheel."""
    lib = root / LIB_DIR
    lib.mkdir(parents=True)
    records = []
    if with_libraries:
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            pytest.skip("no C compiler to build the stand-in libraries")
        (root / "lt.c").write_text("int fake_cublas_lt(void) { return 12; }\n")
        (root / "blas.c").write_text(
            "int fake_cublas_lt(void);\nint fake_cublas_marker(void) { return 30 + fake_cublas_lt(); }\n"
        )
        build = [compiler, "-shared", "-fPIC"]
        lt, blas = str(lib / "libcublasLt.so.12"), str(lib / "libcublas.so.12")
        subprocess.run([*build, "-Wl,-soname,libcublasLt.so.12", "-o", lt, str(root / "lt.c")], check=True)
        # Like NVIDIA's wheel: libcublas needs libcublasLt by soname and finds it beside itself ($ORIGIN).
        link = ["-Wl,-rpath,$ORIGIN", "-L", str(lib), "-l:libcublasLt.so.12"]
        subprocess.run(
            [*build, "-Wl,-soname,libcublas.so.12", "-o", blas, str(root / "blas.c"), *link], check=True
        )
        records = [f"{LIB_DIR}/libcublas.so.12,,", f"{LIB_DIR}/libcublasLt.so.12,,"]
    info = root / "nvidia_cublas_cu12-12.9.3.13.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nvidia-cublas-cu12\nVersion: 12.9.3.13\n")
    (info / "RECORD").write_text("\n".join([*records, f"{info.name}/METADATA,,", f"{info.name}/RECORD,,"]))
    return root


def test_cublas12_paths_come_from_the_wheel_record_in_load_order(tmp_path: Path) -> None:
    site = _fake_cublas_distribution(tmp_path, with_libraries=False)
    for name in cuda.CUBLAS12_LIBRARIES:
        (site / LIB_DIR / name).touch()
    (site / "nvidia_cublas_cu12-12.9.3.13.dist-info" / "RECORD").write_text(
        f"{LIB_DIR}/libcublas.so.12,,\n{LIB_DIR}/libcublasLt.so.12,,\n"
    )
    paths = cuda.cublas12_paths([str(site)])
    assert [path.name for path in paths] == ["libcublasLt.so.12", "libcublas.so.12"]
    assert all(path.parent == site / LIB_DIR for path in paths)


def test_cublas12_paths_empty_without_the_wheel(tmp_path: Path) -> None:
    assert cuda.cublas12_paths([str(tmp_path)]) == []


def test_preload_makes_a_by_name_dlopen_of_cublas12_reach_the_wheel(tmp_path: Path) -> None:
    site = _fake_cublas_distribution(tmp_path / "site")
    probe = textwrap.dedent(
        """
        import ctypes, json
        from voice_orchestrator.engines import cuda

        before = cuda.library_loadable("libcublas.so.12")
        loaded = cuda.preload_cuda_libraries()
        again = cuda.preload_cuda_libraries()
        marker = ctypes.CDLL("libcublas.so.12").fake_cublas_marker()  # the by-name lookup CTranslate2 does
        print(json.dumps({"before": before, "loaded": [str(p) for p in loaded], "again": len(again),
                          "marker": marker}))
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    env.pop("LD_LIBRARY_PATH", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["before"]:
        pytest.skip("this machine already has a libcublas.so.12 on the loader's path")
    assert result["loaded"] == [str(site / LIB_DIR / name) for name in cuda.CUBLAS12_LIBRARIES]
    assert result["again"] == 2  # idempotent
    assert result["marker"] == 42  # the stand-in's function, reached through its libcublasLt


def _diagnosis(**changes: object) -> CudaDiagnosis:
    healthy: dict[str, object] = {
        "visible_devices": None,
        "kernel_driver": "580.65.06",
        "libcuda_found": True,
        "driver_cuda": (13, 0),
        "init_error": None,
        "device_count": 1,
        "ray_gpu_ids": None,
    }
    healthy.update(changes)
    return CudaDiagnosis(**healthy)  # type: ignore[arg-type]


def test_a_healthy_node_has_no_cause() -> None:
    assert likely_causes(_diagnosis(), "13.0") == []


def test_no_driver_at_all() -> None:
    [cause] = likely_causes(_diagnosis(kernel_driver=None, libcuda_found=False, driver_cuda=None), "13.0")
    assert "no NVIDIA driver" in cause
    assert ">= 580" in cause


def test_a_container_without_the_nvidia_runtime() -> None:
    [cause] = likely_causes(_diagnosis(libcuda_found=False, driver_cuda=None), "13.0")
    assert "580.65.06" in cause
    assert "--gpus all" in cause
    assert "nvidia.com/gpu" in cause


def test_a_driver_too_old_for_cuda_13() -> None:
    diagnosis = _diagnosis(kernel_driver="550.54.15", driver_cuda=(12, 4), init_error=None, device_count=1)
    [cause] = likely_causes(diagnosis, "13.0")
    assert "550.54.15 supports CUDA up to 12.4" in cause
    assert ">= 580" in cause
    # The same driver is new enough for CTranslate2's CUDA 12 build.
    assert likely_causes(diagnosis, "12") == []


def test_a_replica_without_num_gpus() -> None:
    causes = likely_causes(
        _diagnosis(visible_devices="", device_count=0, init_error=100, ray_gpu_ids=[]), "13.0"
    )
    assert len(causes) == 2
    assert "num_gpus" in causes[0]
    assert "CUDA_VISIBLE_DEVICES is ''" in causes[1]


def test_a_node_whose_driver_shows_no_device() -> None:
    [cause] = likely_causes(_diagnosis(device_count=0, init_error=100), "13.0")
    assert "no GPU" in cause
    assert "nvidia-smi" in cause


def test_message_for_a_cpu_only_build_says_so() -> None:
    message = no_gpu_message("tts.device is 'cuda'", None, "torch 2.13.0+cpu")
    assert "torch 2.13.0+cpu is a CPU-only build" in message
    assert "device: cpu" in message


def test_message_names_the_cause() -> None:
    message = no_gpu_message(
        "tts.device is 'cuda'",
        "13.0",
        "torch 2.13.0",
        _diagnosis(kernel_driver="550.54.15", driver_cuda=(12, 4)),
    )
    assert message.startswith("tts.device is 'cuda' but torch 2.13.0 (a CUDA 13.0 build) sees no CUDA GPU")
    assert "upgrade the driver to >= 580" in message


def test_diagnosis_reads_the_kernel_module_version(tmp_path: Path) -> None:
    proc = tmp_path / "version"
    proc.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build  (dvs@U16)\n"
        "GCC version:  gcc version 12.3.0\n"
    )
    diagnosis = cuda.diagnose_cuda(proc_version=proc, libcuda="libcuda-that-is-not-here.so.1")
    assert diagnosis.kernel_driver == "580.65.06"
    assert not diagnosis.libcuda_found
    assert diagnosis.device_count is None
    missing = cuda.diagnose_cuda(proc_version=tmp_path / "absent", libcuda="libcuda-that-is-not-here.so.1")
    assert missing.kernel_driver is None


def test_ctranslate2_on_cpu_is_left_alone() -> None:
    cuda.ctranslate2_cuda("cpu", "stt.device")


@pytest.mark.skipif(Path("/proc/driver/nvidia/version").exists(), reason="this machine has an NVIDIA driver")
def test_ctranslate2_on_a_node_without_driver_names_the_cause() -> None:
    # The real CTranslate2 (CPU wheel here): it counts no CUDA device, and the message says why.
    pytest.importorskip("ctranslate2")
    with pytest.raises(RuntimeError) as raised:
        cuda.ctranslate2_cuda("cuda", "stt.device")
    message = str(raised.value)
    assert message.startswith("stt.device is 'cuda' but ctranslate2 ")
    assert "(a CUDA 12 build)" in message
    assert "no NVIDIA driver on this node" in message
