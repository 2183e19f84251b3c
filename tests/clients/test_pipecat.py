"""A real Pipecat voice bot as the client of the /v1 routes: Pipecat 1.14's OpenAISTTService, OpenAILLMService
and OpenAITTSService with `base_url` at the app's /v1, fed a spoken question as 20 ms audio frames in real
time (tests/clients/pipecat_bot.py). One turn must come back whole: a transcript with the question's word, a
reply, and speech.

    bash scripts/venv_pipecat.sh
    .venv-pipecat/bin/python -m pytest -ra tests/clients/test_pipecat.py

Where pipecat-ai is not installed (the main venv) it skips with that reason.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("pipecat") is None,
        reason="pipecat-ai lives in .venv-pipecat: bash scripts/venv_pipecat.sh (make test-pipecat)",
    ),
]

TURN_TIMEOUT_S = 300.0  # one turn on 2 CPU cores: ~10 s of audio in real time, then STT, LLM and TTS


@pytest.mark.parametrize(("question", "language"), [("english_question", "en"), ("japanese_question", "ja")])
async def test_a_pipecat_bot_hears_answers_and_speaks(
    base_url: str, request: pytest.FixtureRequest, question: str, language: str
) -> None:
    from tests.clients.pipecat_bot import OUT_RATE, one_turn

    wav, word = request.getfixturevalue(question)
    turn = await one_turn(f"{base_url}/v1", wav, language, TURN_TIMEOUT_S)

    assert turn.errors == []
    assert turn.finished, f"no end of reply within {TURN_TIMEOUT_S} s: {turn}"
    assert len(turn.transcripts) == 1, turn.transcripts
    assert word in turn.transcripts[0], turn.transcripts
    assert turn.reply.strip(), turn
    # The aggregators kept the turn: the user's transcript, then the assistant's reply.
    assert [role for role, _ in turn.context] == ["user", "assistant"], turn.context
    assert word in turn.context[0][1]

    assert turn.audio_rates == {OUT_RATE}
    speech = np.frombuffer(turn.audio, dtype="<i2").astype(np.float32) / 32768.0
    assert speech.size / OUT_RATE > 0.3, f"{speech.size / OUT_RATE:.2f} s of speech"
    assert float(np.sqrt(np.mean(speech**2))) > 0.01  # not silence
    assert float(np.max(np.abs(speech))) > 0.1
