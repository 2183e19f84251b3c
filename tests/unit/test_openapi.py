"""The committed openapi.yaml is the app's contract: it must match what the app generates."""

from __future__ import annotations

from pathlib import Path

import yaml

from deployments.openapi import openapi_document
from voice_orchestrator.errors import HTTP_STATUS

COMMITTED = Path(__file__).resolve().parents[2] / "openapi.yaml"


def test_committed_openapi_matches_the_app() -> None:
    committed = yaml.safe_load(COMMITTED.read_text())
    assert committed == openapi_document(), "regenerate: python -m deployments.openapi > openapi.yaml"


def test_every_error_status_is_documented_on_the_dialogue_route() -> None:
    responses = openapi_document()["paths"]["/api/orchestrator/dialogue"]["post"]["responses"]
    for code, status in HTTP_STATUS.items():
        assert code.value in responses[str(status)]["description"]
    assert "Retry-After" in responses["429"]["headers"]
    assert "X-Input-Text" in responses["200"]["headers"]
