"""The application graph: three model deployments and the session memory, composed by the FastAPI ingress.

`serve run serve_config.yaml` calls `build_app` with the YAML's `args`: the engine settings, which are the
application's code version (changing them restarts every replica). Live settings belong in each
deployment's `user_config` in the YAML (applied by `reconfigure()`, no restart); any given in `args` instead
become the deployments' default `user_config`, which the YAML's own `user_config` replaces. Environment
variables with the `VOICE_` prefix override both (see voice_orchestrator.settings). `app` is the graph with
defaults, for `serve run graph:app`.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application, Deployment

from deployments.conversations import Conversations
from deployments.ingress import Orchestrator
from deployments.llm import LanguageModel
from deployments.stt import SpeechToText
from deployments.tts import TextToSpeech
from voice_orchestrator.settings import EngineSettings, OrchestratorSettings


def _deployment(decorated: object) -> Deployment:
    # mypy cannot see that @serve.deployment turns a class into a Deployment; this checks it at runtime.
    assert isinstance(decorated, Deployment)
    return decorated


def build_app(args: dict[str, Any] | None = None) -> Application:
    given = dict(args or {})
    # Keyword arguments, not model_validate: only __init__ lets VOICE_* environment variables override.
    settings = OrchestratorSettings(**given)  # every value checked here, at `serve run`/`serve deploy`
    engines = EngineSettings(**settings.model_dump(include=set(EngineSettings.model_fields)))

    def live(decorated: object) -> Deployment:
        deployment = _deployment(decorated)
        return deployment.options(user_config=settings.live_config(deployment.name, given))

    return live(Orchestrator).bind(
        live(SpeechToText).bind(engines),
        live(LanguageModel).bind(engines),
        live(TextToSpeech).bind(engines),
        None,
        live(Conversations).bind(),
    )


app = build_app()
