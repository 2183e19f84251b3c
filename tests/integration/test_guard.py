"""The reply guard on the real app: a model that degenerates mid-reply is cut at its last complete sentence,
stopped early, spoken briefly, and counted (test_metrics' dashboard check asks for a cut reply here too)."""

from __future__ import annotations

from urllib.parse import unquote

import httpx
import pytest
from ray import serve

from tests.integration.faults import deploy_orchestrator
from tests.integration.http import post_dialogue
from voice_orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.integration


def babbled_dialogue(base_url: str, question: bytes) -> httpx.Response:
    """A served dialogue whose reply the guard cuts: the babbling model's app, deployed once per cluster."""
    if "babble" not in serve.status().applications:
        deploy_orchestrator("babble", OrchestratorSettings(), babbling_llm=True)
    return post_dialogue(f"{base_url}/babble", question, language="en")


def test_a_babbling_model_is_cut_at_its_last_sentence(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    response = babbled_dialogue(base_url, english_question[0])
    assert response.status_code == 200, response.text
    assert unquote(response.headers["X-Output-Text"]) == "The moon is the largest planet in the solar system."
    assert float(response.headers["X-Output-Duration"]) < 10.0
    # The model was stopped once the digit run was judged, not left to write its 500 zeros.
    model = serve.get_deployment_handle("BabblingLanguageModel", app_name="babble")
    assert model.deltas_pulled.remote().result() < 250
