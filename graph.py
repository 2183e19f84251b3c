"""The application graph: three model deployments and the session memory, composed by the FastAPI ingress.

`serve run serve_config.yaml` calls `build_app` with the YAML's `args`; environment variables with the
`VOICE_` prefix override them (see voice_orchestrator.settings). `app` is the same graph with defaults,
for `serve run graph:app`.
"""

from __future__ import annotations

from typing import Any

from ray.serve import Application, Deployment

from deployments.conversations import Conversations
from deployments.ingress import Orchestrator
from deployments.llm import LanguageModel
from deployments.stt import SpeechToText
from deployments.tts import TextToSpeech
from voice_orchestrator.settings import OrchestratorSettings


def _deployment(decorated: object) -> Deployment:
    # mypy cannot see that @serve.deployment turns a class into a Deployment; this checks it at runtime.
    assert isinstance(decorated, Deployment)
    return decorated


def build_app(args: dict[str, Any] | None = None) -> Application:
    # Keyword arguments, not model_validate: only __init__ lets VOICE_* environment variables override.
    settings = OrchestratorSettings(**(args or {}))
    return _deployment(Orchestrator).bind(
        _deployment(SpeechToText).bind(settings),
        _deployment(LanguageModel).bind(settings),
        _deployment(TextToSpeech).bind(settings),
        settings,
        _deployment(Conversations).bind(settings),
    )


app = build_app()
