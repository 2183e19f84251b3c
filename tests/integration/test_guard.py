"""The reply guard on the real app: a model that degenerates mid-reply is cut at its last complete sentence,
stopped early, spoken briefly, and counted. (Named to run before test_metrics, whose dashboard check needs the
cut-replies counter exported.)"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from ray import serve

from tests.integration.faults import deploy_orchestrator
from tests.integration.http import post_dialogue
from voice_orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.integration


def test_a_babbling_model_is_cut_at_its_last_sentence(
    base_url: str, english_question: tuple[bytes, str]
) -> None:
    prefix = deploy_orchestrator("babble", OrchestratorSettings(), babbling_llm=True)
    response = post_dialogue(base_url + prefix, english_question[0], language="en")
    assert response.status_code == 200, response.text
    assert unquote(response.headers["X-Output-Text"]) == "The moon is the largest planet in the solar system."
    assert float(response.headers["X-Output-Duration"]) < 10.0
    # The model was stopped once the digit run was judged, not left to write its 500 zeros.
    model = serve.get_deployment_handle("BabblingLanguageModel", app_name="babble")
    assert model.deltas_pulled.remote().result() < 250
