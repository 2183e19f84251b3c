"""Language model on CPU with llama.cpp (llama-cpp-python): a packaged model (Gemma 3 270M, SmolLM2-135M) or
any local GGUF.

llama.cpp is neither thread-safe nor async, so every generation runs on one dedicated worker thread and its
tokens are handed to the event loop through a queue: the replica keeps answering health checks while it
generates, and callers can stream the deltas.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from voice_orchestrator.engines.assets import packaged_gemma_270m, packaged_smollm2_135m
from voice_orchestrator.engines.llama_build import (
    REINSTALL_HINT,
    amx_repacking_crashes,
    cpu_flags,
    installed_build_features,
)
from voice_orchestrator.engines.prompts import FEW_SHOT_STOP, chat_messages, few_shot_prompt, fit_context
from voice_orchestrator.protocol import EngineInfo, ReplyRequest
from voice_orchestrator.settings import LanguageModelSettings

logger = logging.getLogger(__name__)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()

_PACKAGED_NAMES = {
    "gemma-3-270m": "gemma-3-270m Q4_K_M (packaged)",
    "smollm2-135m-instruct": "smollm2-135m-instruct Q4_1 (packaged)",
}


def _amx_would_crash() -> bool:
    """A llama.cpp compiled with AMX (a native build on an AMX machine, not scripts/install.sh's) repacks
    weights for its AMX kernels, which segfault on the first token (llama.cpp#20824): then load without
    repacking."""
    if not amx_repacking_crashes(installed_build_features(), cpu_flags()):
        return False
    logger.warning(
        "this llama-cpp-python was compiled with AMX and this CPU has AMX: weight repacking is turned off "
        "(llama.cpp#20824), which also turns off the AVX repacking; %s",
        REINSTALL_HINT,
    )
    return True


@contextlib.contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """`Llama` exposes few of llama.cpp's model parameters: set `fields` on the defaults it starts from."""
    import llama_cpp.llama_cpp as bindings

    defaults = bindings.llama_model_default_params

    def with_fields() -> Any:
        params = defaults()
        for name, value in fields.items():
            setattr(params, name, value)
        return params

    bindings.llama_model_default_params = with_fields
    try:
        yield
    finally:
        bindings.llama_model_default_params = defaults


class LlamaCppEngine:
    def __init__(self, settings: LanguageModelSettings, cache_dir: Path) -> None:
        try:
            from llama_cpp import Llama
        except ModuleNotFoundError:
            from voice_orchestrator.engines import MissingDependencyError

            raise MissingDependencyError("llama-cpp", "llama-cpp-python", "embedded") from None

        packaged = settings.model_path is None
        if settings.model_path is not None:
            model_path = settings.model_path
        elif settings.packaged_model == "smollm2-135m-instruct":
            model_path = packaged_smollm2_135m()
        else:
            model_path = packaged_gemma_270m(cache_dir)
        logger.info(
            "loading GGUF model %s (n_ctx=%d, threads=%d)",
            model_path,
            settings.context_size,
            settings.threads,
        )
        started = time.perf_counter()
        with _model_params(use_extra_bufts=not _amx_would_crash()):
            self._llm = Llama(
                model_path=str(model_path),
                n_ctx=settings.context_size,
                n_threads=settings.threads,
                seed=settings.seed,
                verbose=False,
            )
        logger.info("GGUF model loaded in %.1f s", time.perf_counter() - started)
        has_template = bool(self._llm.metadata.get("tokenizer.chat_template"))
        base_model = packaged and settings.packaged_model == "gemma-3-270m"
        if settings.prompt_style == "auto":
            # The packaged Gemma 270M is a base model: its GGUF carries a template it was never tuned for.
            self._chat = has_template and not base_model
        else:
            self._chat = settings.prompt_style == "chat"
        self._settings = settings
        self._formatter: Any = None  # the chat template, to count a prompt's tokens (made on first use)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama-cpp")
        self.info = EngineInfo(
            engine="llama-cpp",
            model=_PACKAGED_NAMES[settings.packaged_model] if packaged else model_path.name,
            extra={"prompt_style": "chat" if self._chat else "few-shot"},
        )

    def _generate(self, request: ReplyRequest, cancelled: threading.Event) -> Iterator[str]:
        settings = self._settings
        max_tokens = request.max_tokens or settings.max_tokens
        # Counted here, on the worker thread: llama.cpp's tokenizer shares the model with generation.
        request = fit_context(request, self.prompt_tokens, settings.context_size, max_tokens)
        common: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": settings.temperature if request.temperature is None else request.temperature,
            "repeat_penalty": settings.repetition_penalty,
            "stream": True,
        }
        if self._chat:
            messages: Any = chat_messages(request)
            stop = request.stop or None
            chat_chunks: Any = self._llm.create_chat_completion(messages=messages, stop=stop, **common)
            for chunk in chat_chunks:
                if cancelled.is_set():
                    return
                delta = chunk["choices"][0]["delta"].get("content")
                if delta:
                    yield str(delta)
        else:
            stops = [*FEW_SHOT_STOP, *request.stop]
            chunks: Any = self._llm.create_completion(few_shot_prompt(request), stop=stops, **common)
            for chunk in chunks:
                if cancelled.is_set():
                    return
                text = chunk["choices"][0]["text"]
                if text:
                    yield str(text)

    def count_tokens(self, text: str) -> int:
        """The model's own token count (usage figures), without BOS or special-token parsing."""
        return len(self._llm.tokenize(text.encode(), add_bos=False, special=False))

    def prompt_tokens(self, request: ReplyRequest) -> int:
        """The prompt's token count as the model reads it: the chat template applied, or few-shot."""
        if not self._chat:
            return len(self._llm.tokenize(few_shot_prompt(request).encode(), add_bos=True, special=False))
        if self._formatter is None:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text_of(token: int) -> str:
                return self._llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

            self._formatter = Jinja2ChatFormatter(
                template=str(self._llm.metadata["tokenizer.chat_template"]),
                eos_token=text_of(self._llm.token_eos()),
                bos_token=text_of(self._llm.token_bos()),
            )
        prompt = self._formatter(messages=chat_messages(request)).prompt
        return len(self._llm.tokenize(prompt.encode(), add_bos=False, special=True))

    async def stream(self, request: ReplyRequest) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancelled = threading.Event()

        def produce() -> None:
            try:
                for delta in self._generate(request, cancelled):
                    loop.call_soon_threadsafe(queue.put_nowait, delta)
            except BaseException as error:  # handed to the consumer, which re-raises it
                loop.call_soon_threadsafe(queue.put_nowait, _Failure(error))
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _END)

        loop.run_in_executor(self._executor, produce)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, _Failure):
                    raise item.error
                yield str(item)
        finally:
            cancelled.set()  # a disconnected or timed-out caller frees the worker at the next token

    async def probe(self) -> None:
        # The few-shot prefix doubles as the probe: it also leaves that prefix in llama.cpp's KV cache.
        prompt = few_shot_prompt(ReplyRequest(text="こんにちは", language="ja"))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            self._executor, lambda: self._llm.create_completion(prompt, max_tokens=1, temperature=0.0)
        )
