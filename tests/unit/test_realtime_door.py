"""The realtime socket's door on the real HTTP layer (fake stages, Starlette's test client): the API key on
the upgrade as a Bearer header or as the browser's subprotocol, the model, and refusals as JSON responses."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse

from tests.unit.fakes import fake_app

KEY = "s3cret-key"


def client(**settings: Any) -> TestClient:
    return TestClient(fake_app(**settings).app)


def test_the_key_as_a_bearer_header_opens_the_session() -> None:
    with client(api_key=KEY).websocket_connect(
        "/v1/realtime?model=voice-dialogue", headers={"Authorization": f"Bearer {KEY}"}
    ) as socket:
        created = socket.receive_json()
    assert created["type"] == "session.created"
    assert created["session"]["model"] == "voice-dialogue"
    assert created["session"]["audio"]["input"]["turn_detection"]["type"] == "server_vad"


def test_the_browsers_subprotocol_key_opens_the_session_and_realtime_is_chosen() -> None:
    protocols = ["realtime", f"openai-insecure-api-key.{KEY}"]
    with client(api_key=KEY).websocket_connect(
        "/v1/realtime?model=gpt-realtime", subprotocols=protocols
    ) as socket:
        assert socket.accepted_subprotocol == "realtime"
        assert socket.receive_json()["type"] == "session.created"


@pytest.mark.parametrize(
    ("query", "headers", "status", "code"),
    [
        ("?model=voice-dialogue", {}, 401, "UNAUTHORIZED"),
        ("?model=voice-dialogue", {"Authorization": "Bearer wrong"}, 401, "UNAUTHORIZED"),
        ("?model=whisper-1", {"Authorization": f"Bearer {KEY}"}, 404, "MODEL_NOT_FOUND"),
        (
            "?model=voice-dialogue&session_id=bad%20id",
            {"Authorization": f"Bearer {KEY}"},
            400,
            "INVALID_REQUEST",
        ),
    ],
)
def test_refused_upgrades_get_the_json_error(
    query: str, headers: dict[str, str], status: int, code: str
) -> None:
    door = client(api_key=KEY)
    with (
        pytest.raises(WebSocketDenialResponse) as refused,
        door.websocket_connect(f"/v1/realtime{query}", headers=headers),
    ):
        pass
    assert refused.value.status_code == status
    assert json.loads(refused.value.content)["error"]["code"] == code


def test_no_session_slot_is_a_429_with_retry_after() -> None:
    door = client(max_realtime_sessions=0)
    with pytest.raises(WebSocketDenialResponse) as refused, door.websocket_connect("/v1/realtime"):
        pass
    assert refused.value.status_code == 429
    assert refused.value.headers["retry-after"] == "1"
    assert json.loads(refused.value.content)["error"]["code"] == "TOO_MANY_REQUESTS"


def test_the_session_slot_is_held_while_open_and_given_back() -> None:
    app = fake_app(max_realtime_sessions=1)
    test_client = TestClient(app.app)
    with test_client.websocket_connect("/v1/realtime") as socket:
        socket.receive_json()
        assert app.gate.sessions.active == 1
        with pytest.raises(WebSocketDenialResponse), test_client.websocket_connect("/v1/realtime"):
            pass
    assert app.gate.sessions.active == 0


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"realtime_idle_timeout_seconds": 0.3}, "idle timeout"),
        ({"realtime_max_session_seconds": 0.3, "realtime_idle_timeout_seconds": 60}, "session time limit"),
    ],
)
def test_idle_and_over_long_sessions_are_closed_with_1000(settings: dict[str, Any], reason: str) -> None:
    app = fake_app(**settings)
    with TestClient(app.app).websocket_connect("/v1/realtime") as socket:
        socket.receive_json()
        closed = socket.receive()
    assert closed == {"type": "websocket.close", "code": 1000, "reason": reason}
    assert app.gate.sessions.active == 0


def test_a_message_over_the_size_limit_is_an_error_then_1009() -> None:
    with TestClient(fake_app(realtime_max_message_bytes=1024).app).websocket_connect(
        "/v1/realtime"
    ) as socket:
        socket.receive_json()
        socket.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 2048}))
        assert socket.receive_json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
        assert socket.receive()["code"] == 1009


def test_the_session_voice_is_any_voice_of_the_engine_and_an_unknown_one_is_refused() -> None:
    with TestClient(fake_app().app).websocket_connect("/v1/realtime") as socket:
        socket.receive_json()
        for voice in ("jf_alpha", "en_US-joe", "alloy"):  # a Japanese-only voice, an English one, OpenAI's
            socket.send_text(
                json.dumps({"type": "session.update", "session": {"audio": {"output": {"voice": voice}}}})
            )
            updated = socket.receive_json()
            assert updated["type"] == "session.updated", updated
            assert updated["session"]["audio"]["output"]["voice"] == voice
        socket.send_text(
            json.dumps({"type": "session.update", "session": {"audio": {"output": {"voice": "nobody"}}}})
        )
        refused = socket.receive_json()
    assert refused["type"] == "error"
    assert refused["error"]["param"] == "voice"
