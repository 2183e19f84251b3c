"""serve_config.yaml must parse as a Serve config and match the code it points at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ray.serve.schema import ServeDeploySchema

import graph
from voice_orchestrator.settings import OrchestratorSettings

CONFIG = Path(__file__).resolve().parents[2] / "serve_config.yaml"


def test_serve_config_parses_and_builds_against_the_code() -> None:
    raw: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config = ServeDeploySchema.model_validate(raw)
    [application] = config.applications
    module, _, attribute = application.import_path.partition(":")
    assert module == "graph"
    builder = getattr(graph, attribute)
    settings = OrchestratorSettings(**application.args)
    assert settings.max_concurrent_dialogues == 5
    built = builder(application.args)
    assert type(built).__name__ == "Application"

    deployed = {deployment.name: deployment for deployment in application.deployments}
    assert set(deployed) == {"Orchestrator", "SpeechToText", "LanguageModel", "TextToSpeech"}
    cpus: dict[str, float] = {}
    for name, deployment in deployed.items():
        options = deployment.ray_actor_options
        assert isinstance(options.num_cpus, float | int), name
        assert isinstance(deployment.num_replicas, int), name
        cpus[name] = float(options.num_cpus) * deployment.num_replicas
        # Unset num_cpus means a whole core per replica: the app would never fit on 2 cores.
        assert options.num_cpus < 1, name
    assert sum(cpus.values()) <= 2
    # The ingress must admit more than the dialogue limit so /status and instant 429s still answer.
    ingress_limit = deployed["Orchestrator"].max_ongoing_requests
    assert isinstance(ingress_limit, int)
    assert ingress_limit > settings.max_concurrent_dialogues
