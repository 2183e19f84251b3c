"""Fixtures shared by the integration and browser tests: one real Ray cluster serving the real graph with the
real packaged models, started at most once per pytest session however many test folders use it.

They live here rather than in tests/integration/conftest.py because a fixture imported into a second conftest
is a second fixture: each folder would start its own cluster in the same process. The heavy imports are inside
the fixtures so that collecting the unit tests does not import Ray.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.serving import free_ports

PROFILE = Path(__file__).parents[1] / "serve_config.yaml"


def _profile_models() -> dict[str, object]:
    import yaml

    args = yaml.safe_load(PROFILE.read_text())["applications"][0]["args"]
    return {section: args[section] for section in ("stt", "llm", "tts")}


# The Wyoming door's port (chosen once per test process, so redeployed apps keep it).
WYOMING_PORT = free_ports(1)[0]

# The embedded profile's models (English answered by SmolLM2, Japanese by Gemma), with small limits so the
# tests can reach them cheaply, and the Wyoming door on; everything else is the default.
TEST_ARGS = {
    **_profile_models(),
    "max_concurrent_dialogues": 2,
    "max_upload_bytes": 2 * 1024 * 1024,
    "status_cache_seconds": 0.5,
    "max_realtime_sessions": 3,
    "wyoming_port": WYOMING_PORT,
    "wyoming_max_connections": 4,
}


# Serve's proxy cuts any request (and, unless the edge says otherwise, any socket) after this long, as the
# profile's `request_timeout_s` does after 180 s; above every REST test's longest request (the app's upload
# deadline is 60 s), short enough that a realtime session can be held past it in a test.
PROXY_TIMEOUT_S = 75.0


@pytest.fixture(scope="session")
def cluster_ports() -> tuple[int, int]:
    """(Serve's HTTP port, Ray's Prometheus metrics port)."""
    http_port, metrics_port = free_ports(2, exclude={WYOMING_PORT})
    return http_port, metrics_port


@pytest.fixture(scope="session")
def base_url(cluster_ports: tuple[int, int]) -> Iterator[str]:
    import ray
    import yaml
    from ray import serve

    from tests.serving import app_config, deploy

    http_port, metrics_port = cluster_ports
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _metrics_export_port=metrics_port)
    try:
        # Serve's proxies get the HTTP edge (voice_orchestrator/edge.py) from the YAML, as with `serve run`.
        profile = yaml.safe_load(PROFILE.read_text())
        serve.start(
            http_options={"host": "127.0.0.1", "port": http_port, "request_timeout_s": PROXY_TIMEOUT_S},
            controller_options=profile["controller_options"],
        )
        deploy(app_config(TEST_ARGS))
        yield f"http://127.0.0.1:{http_port}"
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@pytest.fixture(scope="session")
def japanese_question() -> tuple[bytes, str]:
    """「今日の天気は？」 spoken by Open JTalk, as a 48 kHz WAV."""
    import pyopenjtalk

    from voice_orchestrator.audio import encode_wav_pcm16

    samples, rate = pyopenjtalk.tts("今日の天気は？")
    return encode_wav_pcm16((np.asarray(samples) / 32768.0).astype(np.float32), int(rate)), "天気"
