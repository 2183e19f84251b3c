"""Live settings: a changed `user_config` reaches the running replicas in place (no restart, models stay
loaded) and takes effect; an invalid one is refused while the running settings keep serving (Serve would take
the deployment down if `reconfigure()` raised: measured, see voice_orchestrator.settings.apply_live)."""

from __future__ import annotations

import asyncio
import socket

import pytest
import ray
from ray import serve

from bench.serving import free_ports
from tests.conftest import TEST_ARGS, WYOMING_PORT
from tests.integration.http import get_status
from tests.integration.wyoming_client import describe
from tests.serving import APP, app_config, deploy
from voice_orchestrator.config_check import problems
from voice_orchestrator.protocol import SpeechAudio, SynthesisRequest

pytestmark = pytest.mark.integration

DEPLOYMENTS = ("Orchestrator", "SpeechToText", "LanguageModel", "TextToSpeech", "Conversations")
# TEST_ARGS puts these live settings in `args`: a user_config replaces them whole, so it restates them.
LIVE_IN_ARGS = ("max_upload_bytes", "status_cache_seconds", "max_realtime_sessions", "wyoming_port")
INGRESS = {key: TEST_ARGS[key] for key in LIVE_IN_ARGS}


def replicas() -> dict[str, list[tuple[str, str]]]:
    """Each deployment's live replica actors: (actor name, actor id). A restart changes both."""
    found: dict[str, list[tuple[str, str]]] = {name: [] for name in DEPLOYMENTS}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        for name in DEPLOYMENTS:
            if actor["name"].startswith(f"SERVE_REPLICA::{APP}#{name}#"):
                handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
                found[name].append((actor["name"], handle._actor_id.hex()))
    return {name: sorted(actors) for name, actors in found.items()}


def spoken_voice() -> str:
    handle = serve.get_deployment_handle("TextToSpeech", app_name=APP)
    speech: SpeechAudio = handle.synthesize.remote(SynthesisRequest(text="はい。", language="ja")).result()
    return speech.voice


def test_a_live_setting_changes_without_restarting_the_models(base_url: str) -> None:
    before = replicas()
    assert all(before.values()), before
    assert get_status(base_url)[1].max_concurrent_dialogues == TEST_ARGS["max_concurrent_dialogues"]
    configured = spoken_voice()  # tts.japanese_voice: auto, so Kokoro or mei as this machine's speed has it
    assert configured in ("kokoro:jf_alpha", "openjtalk:mei")
    try:
        deploy(
            app_config(
                TEST_ARGS,
                {
                    "Orchestrator": {**INGRESS, "max_concurrent_dialogues": 3},
                    "TextToSpeech": {"default_voice": "jm_kumo"},
                    "Conversations": {"session_max_turns": 2},
                },
            )
        )
        assert get_status(base_url)[1].max_concurrent_dialogues == 3
        assert spoken_voice() == "kokoro:jm_kumo"
        assert replicas() == before  # same actors: nothing restarted, no model reloaded

        # An invalid value is refused whole; the running settings keep serving, nothing restarts.
        invalid = app_config(TEST_ARGS, {"Orchestrator": {**INGRESS, "max_concurrent_dialogues": 0}})
        assert any("max_concurrent_dialogues" in line for line in problems({"applications": [invalid]}))
        deploy(invalid, 120)
        code, status = get_status(base_url)
        assert code == 200
        assert status.max_concurrent_dialogues == 3
        assert replicas() == before
    finally:
        deploy(app_config(TEST_ARGS))
    assert get_status(base_url)[1].max_concurrent_dialogues == TEST_ARGS["max_concurrent_dialogues"]
    assert spoken_voice() == configured
    assert replicas() == before


def test_the_wyoming_listener_moves_with_its_live_port_and_a_taken_port_is_refused(base_url: str) -> None:
    before = replicas()
    moved = free_ports(1, exclude={WYOMING_PORT})[0]
    try:
        deploy(app_config(TEST_ARGS, {"Orchestrator": {**INGRESS, "wyoming_port": moved}}))
        assert asyncio.run(describe(moved)).asr
        with pytest.raises(ConnectionRefusedError):
            asyncio.run(describe(WYOMING_PORT))  # the old port is closed

        # A port another process holds: refused, and the listener stays where it was.
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            deploy(app_config(TEST_ARGS, {"Orchestrator": {**INGRESS, "wyoming_port": port}}), 120)
            assert asyncio.run(describe(moved)).tts
        assert replicas() == before
    finally:
        deploy(app_config(TEST_ARGS))
    assert asyncio.run(describe()).asr
