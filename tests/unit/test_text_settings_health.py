from __future__ import annotations

import pickle
from typing import Any
from urllib.parse import unquote

import pytest

from voice_orchestrator.errors import HTTP_STATUS, OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.health import EngineHealth
from voice_orchestrator.settings import OrchestratorSettings
from voice_orchestrator.text import clean_for_speech, header_text, is_japanese


@pytest.mark.parametrize(
    ("text", "japanese"),
    [
        ("今日は晴れです", True),
        ("カタカナ", True),
        ("ひらがな", True),
        ("Tokyo is sunny.", False),
        ("", False),
        ("𰻞", True),  # extension G (U+30EDE)
        ("𩸽", True),  # extension B alone
        ("髙﨑", True),  # a compatibility ideograph (U+FA11)
        ("々", True),
        ("Ω 😀 ½", False),  # other scripts, emoji and symbols are not kanji
    ],
)
def test_script_detection(text: str, japanese: bool) -> None:
    assert is_japanese(text) is japanese


def test_clean_for_speech_removes_markdown_urls_and_emoji() -> None:
    text = "# Answer\n**Tokyo** is [the capital](https://example.org) 🗼✨ — see https://x.y/z\n- `done`"
    assert clean_for_speech(text) == "Answer Tokyo is the capital — see done"
    assert clean_for_speech("東京です。😊") == "東京です。"


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("| City | Weather |\n|---|:---:|\n| Tokyo | sunny |", "City, Weather Tokyo, sunny"),
        ("| 都市 | 天気 |\n| 東京 | 晴れ |", "都市、天気 東京、晴れ"),  # a Japanese row pauses with 、
        ("Line one<br>line two<br/>", "Line one line two"),
        ("<b>bold</b> and <span class='x'>styled</span>", "bold and styled"),
        ("a < b and c > d", "a < b and c > d"),  # comparisons are not tags
        ("_emphasis_ here, snake_case_name stays", "emphasis here, snake_case_name stays"),
        ("First\n---\nNext\n***", "First Next"),  # horizontal rules
        ("- [ ] buy milk\n- [x] call mum", "buy milk call mum"),
        ("Tokyo[^1] is big.", "Tokyo is big."),
        ("\\*not emphasis\\* 5 \\+ 3", "not emphasis 5 + 3"),
        ("a|b", "a b"),
    ],
)
def test_clean_for_speech_reads_tables_and_drops_other_markdown(text: str, spoken: str) -> None:
    assert clean_for_speech(text) == spoken


def test_header_text_is_latin1_safe_and_reversible() -> None:
    encoded = header_text("今日の天気は？ 50% off")
    encoded.encode("latin-1")
    assert unquote(encoded) == "今日の天気は？ 50% off"


def test_every_error_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == set(OrchestratorErrorCode)


def test_orchestrator_error_survives_pickling() -> None:
    error = OrchestratorError(
        OrchestratorErrorCode.TOO_MANY_REQUESTS, "busy", details={"a": 1}, retry_after=2
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.code, copy.message, copy.details, copy.retry_after) == (error.code, "busy", {"a": 1}, 2)


def test_environment_overrides_yaml_args(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_MAX_CONCURRENT_DIALOGUES", "9")
    monkeypatch.setenv("VOICE_LLM__MAX_TOKENS", "32")
    yaml_args: dict[str, Any] = {"max_concurrent_dialogues": 3, "llm": {"max_tokens": 100, "threads": 1}}
    settings = OrchestratorSettings(**yaml_args)
    assert settings.max_concurrent_dialogues == 9
    assert settings.llm.max_tokens == 32
    assert settings.llm.threads == 1


def test_unknown_setting_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_concurrent_dialogs"):
        OrchestratorSettings(max_concurrent_dialogs=3)  # type: ignore[call-arg]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_health_probes_only_when_no_recent_success() -> None:
    probes: list[float] = []
    clock = Clock()

    async def probe() -> None:
        probes.append(clock.now)

    health = EngineHealth(probe, interval_s=60.0, clock=clock)
    await health.check()  # nothing proven yet: probe
    clock.now = 30.0
    await health.check()  # proven 30 s ago: skip
    clock.now = 100.0
    await health.check()  # stale: probe
    assert probes == [0.0, 100.0]


async def test_health_failure_is_reported_and_forces_a_probe() -> None:
    clock = Clock()
    broken = True

    async def probe() -> None:
        if broken:
            raise RuntimeError("model file vanished")

    health = EngineHealth(probe, interval_s=60.0, clock=clock)

    async def failing() -> None:
        raise ValueError("bad tensor")

    with pytest.raises(ValueError, match="bad tensor"):
        await health.track(failing())
    assert health.last_error == "ValueError: bad tensor"
    with pytest.raises(RuntimeError, match="vanished"):
        await health.check()
    broken = False
    await health.check()
    assert health.last_error is None
