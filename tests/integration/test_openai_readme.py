"""The README's `/v1` examples run as written (curl and the `openai` package) against the real app."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED_URL = "http://127.0.0.1:8000"


def readme_example(heading: str, language: str) -> str:
    """The one `language` example of the README section under `heading` (up to the next heading)."""
    section = README.read_text().split(heading, 1)[1]
    section = re.split(r"\n##+ ", section, maxsplit=1)[0]
    blocks = re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, f"one {language} example under {heading}"
    return str(blocks[0])


def _examples(language: str) -> str:
    return readme_example("### OpenAI-compatible routes (`/v1`)", language)


def test_the_curl_examples(base_url: str, tmp_path: Path) -> None:
    script = _examples("bash").replace(DOCUMENTED_URL, base_url)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reply.mp3").stat().st_size > 5_000
    assert '"object": "list"' in done.stdout  # the models, pretty-printed
    assert "天気" in done.stdout  # the transcript of the spoken reply
    assert '"task":"translate","language":"en"' in done.stdout  # the reply translated into English
    assert '"chat.completion"' in done.stdout


def test_the_python_example(base_url: str) -> None:
    code = _examples("python").replace(DOCUMENTED_URL, base_url)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    output = printed.getvalue()
    assert "weather" in output.lower()
    assert "CompletionUsage(" in output
