"""Every serve profile must parse as a Serve config and build against the code it points at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

import graph
from voice_orchestrator.settings import LIVE_SETTINGS, EngineSettings, IngressSettings, OrchestratorSettings

ROOT = Path(__file__).resolve().parents[2]
CPU_PROFILE = ROOT / "serve_config.yaml"
GPU_PROFILE = ROOT / "cluster" / "serve_config.gpu.yaml"
DEPLOYMENTS = {"Orchestrator", "SpeechToText", "LanguageModel", "TextToSpeech", "Conversations"}


def application(path: Path) -> ServeApplicationSchema:
    raw: dict[str, Any] = yaml.safe_load(path.read_text())
    [app] = ServeDeploySchema.model_validate(raw).applications
    return app


@pytest.mark.parametrize("profile", [CPU_PROFILE, GPU_PROFILE], ids=["cpu", "gpu"])
def test_profile_parses_and_builds_against_the_code(profile: Path) -> None:
    app = application(profile)
    module, _, attribute = app.import_path.partition(":")
    assert module == "graph"
    # `args` only select and load engines: a live setting there would restart every model when changed.
    EngineSettings(**app.args)  # unknown, mistyped or live settings fail here
    built = getattr(graph, attribute)(app.args)
    assert type(built).__name__ == "Application"

    deployed = {deployment.name: deployment for deployment in app.deployments}
    assert set(deployed) == DEPLOYMENTS
    for name, deployment in deployed.items():
        # YAML ray_actor_options replaces the decorator's dict: an unset num_cpus would mean a whole core.
        assert isinstance(deployment.ray_actor_options.num_cpus, float | int), name
        # Every live setting is valid for the deployment that applies it.
        assert isinstance(deployment.user_config, dict), name
        LIVE_SETTINGS[name](**deployment.user_config)
    # The ingress must admit more than dialogues and uploads so /status and instant 429s still answer.
    ingress_limit = deployed["Orchestrator"].max_ongoing_requests
    assert isinstance(ingress_limit, int)
    ingress_config = deployed["Orchestrator"].user_config
    assert isinstance(ingress_config, dict)
    ingress = IngressSettings(**ingress_config)
    assert ingress_limit > ingress.max_concurrent_dialogues + ingress.max_concurrent_uploads
    # Session memory lives in one replica.
    assert deployed["Conversations"].num_replicas == 1
    for stage in ("SpeechToText", "LanguageModel", "TextToSpeech"):
        backpressure = deployed[stage].backpressure_config
        assert not isinstance(backpressure, str)
        assert backpressure.status_code == 429, stage


def test_cpu_profile_fits_two_cores() -> None:
    app = application(CPU_PROFILE)
    settings = OrchestratorSettings(**app.args)
    [ingress] = [deployment for deployment in app.deployments if deployment.name == "Orchestrator"]
    assert isinstance(ingress.user_config, dict)
    assert IngressSettings(**ingress.user_config).max_concurrent_dialogues == 5
    engines = (settings.stt.engine, settings.llm.engine, settings.tts.engine)
    assert engines == ("faster-whisper", "llama-cpp", "embedded")
    total = 0.0
    for deployment in app.deployments:
        options = deployment.ray_actor_options
        assert isinstance(deployment.num_replicas, int), deployment.name
        assert isinstance(options.num_cpus, float | int)
        assert options.num_cpus < 1, deployment.name
        assert not options.num_gpus, deployment.name
        total += float(options.num_cpus) * deployment.num_replicas
    assert total <= 2


def test_gpu_profile_shares_one_gpu_between_the_stages() -> None:
    app = application(GPU_PROFILE)
    settings = OrchestratorSettings(**app.args)
    engines = (settings.stt.engine, settings.llm.engine, settings.tts.engine)
    assert engines == ("faster-whisper", "vllm", "coqui")
    assert settings.stt.device == "cuda"
    gpus = {d.name: d.ray_actor_options.num_gpus for d in app.deployments}
    assert gpus["SpeechToText"] == pytest.approx(0.2)
    assert gpus["LanguageModel"] == pytest.approx(0.6)
    assert gpus["TextToSpeech"] == pytest.approx(0.2)
    assert not gpus["Orchestrator"]
    assert not gpus["Conversations"]
    # vLLM's share of memory must leave room for the other stages on the same GPU.
    assert settings.llm.gpu_memory_utilization <= 0.6


def test_kuberay_service_serves_the_gpu_profile_verbatim() -> None:
    service: dict[str, Any] = yaml.safe_load((ROOT / "cluster" / "ray-service.yaml").read_text())
    assert service["kind"] == "RayService"
    assert yaml.safe_load(service["spec"]["serveConfigV2"]) == yaml.safe_load(GPU_PROFILE.read_text())
    workers = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    assert any(
        container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        for group in workers
        for container in group["template"]["spec"]["containers"]
    ), "no GPU worker group"
