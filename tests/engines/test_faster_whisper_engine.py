"""faster-whisper engine on the packaged model: sequential and batched decoding hear the same question."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.engines import create_stt_engine
from voice_orchestrator.settings import SpeechToTextSettings

pytest.importorskip("faster_whisper", reason="the embedded extra is not installed")
pytest.importorskip("pyopenjtalk", reason="the embedded extra is not installed")


def japanese_question() -> np.ndarray:
    import pyopenjtalk

    from voice_orchestrator.audio import encode_wav_pcm16

    samples, rate = pyopenjtalk.tts("今日の天気は？")
    wav = encode_wav_pcm16((np.asarray(samples) / 32768.0).astype(np.float32), int(rate))
    return decode_audio(wav, AudioLimits(0.0, 60.0)).samples


@pytest.mark.parametrize("batch_size", [1, 4])
def test_packaged_whisper_hears_the_question(batch_size: int) -> None:
    cache = Path.home() / ".cache" / "voice-orchestrator"  # reuse the joined model if another test made it
    engine = create_stt_engine(SpeechToTextSettings(batch_size=batch_size), cache)
    engine.probe()
    heard = engine.transcribe(japanese_question(), None)
    assert "天気" in heard.text
    assert heard.language == "ja"
    assert engine.info.extra["batch_size"] == batch_size
    # Silence has no speech in it: VAD leaves nothing to decode.
    assert engine.transcribe(np.zeros(16_000 * 2, dtype=np.float32), "ja").text == ""
