"""The push-to-talk page (GET /) in a real headless Chromium against the real served app.

Chromium's fake microphone plays a WAV of 「今日の天気は？」 (Open JTalk); the test holds the talk button,
releases it, and waits until the page shows the transcript, the streamed reply and has played at least one
sentence through Web Audio. Nothing is mocked: MediaRecorder's WebM/Opus goes through the real ingress,
Whisper, the language model and the TTS.

Needs Debian's Chromium and the `playwright` package (`bash scripts/install_browser.sh .venv`); Playwright's
own browser download is never used.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM = os.environ.get("VOICE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
SPEECH_TIMEOUT_MS = 180_000  # CPU models answer in ~5-10 s; a shared 2-core machine can be much slower

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(
        not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)),
        reason=f"no Chromium at {CHROMIUM} (bash scripts/install_browser.sh installs Debian's chromium)",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is missing (bash scripts/install_browser.sh installs it)",
)

# Flags for a headless Chromium on a machine whose network only reaches package registries (without the
# background-networking ones it keeps trying Google's hosts), plus the fake microphone.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream",  # grant getUserMedia without a prompt
    "--use-fake-device-for-media-stream",
]


def fake_microphone_wav(question: bytes, total_s: float = 8.0, lead_s: float = 0.3) -> bytes:
    """The question as Chromium's fake capture file wants it: a 16-bit PCM WAV, here padded with silence.

    Chromium loops the file from the moment the page opens the microphone; 0.3 s of silence before and silence
    up to 8 s after mean a press of ~3 s records the whole question once and never its repetition.
    """
    import io
    import wave

    from voice_orchestrator.audio import encode_wav_pcm16

    with wave.open(io.BytesIO(question)) as wav:
        assert wav.getsampwidth() == 2
        assert wav.getnchannels() == 1
        rate = wav.getframerate()
        speech = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    lead = np.zeros(int(lead_s * rate), dtype=np.float32)
    tail = np.zeros(max(0, int(total_s * rate) - len(lead) - len(speech)), dtype=np.float32)
    return encode_wav_pcm16(np.concatenate([lead, speech, tail]), rate)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory, japanese_question: tuple[bytes, str]) -> Iterator[Any]:
    directory = tmp_path_factory.mktemp("chromium")
    microphone = directory / "question.wav"
    microphone.write_bytes(fake_microphone_wav(japanese_question[0]))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={microphone}"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium: Any, base_url: str) -> Iterator[Any]:
    """A fresh context (its own sessionStorage and microphone) on the served page; page errors fail it."""
    viewport = {"width": 1100, "height": 1000}
    context = chromium.new_context(base_url=base_url, locale="ja-JP", viewport=viewport)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    sync_api.expect(page.get_by_role("button", name="Hold to talk")).to_be_visible()
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def hold_talk_button(page: Any, seconds: float) -> None:
    page.locator("#talk").hover()
    page.mouse.down()
    sync_api.expect(page.locator("#talk")).to_have_attribute("aria-pressed", "true")
    page.wait_for_timeout(seconds * 1000)
    page.mouse.up()


def voice_state(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("() => JSON.parse(JSON.stringify(window.voiceState))")
    return state


def test_spoken_japanese_question_is_answered_aloud(page: Any, japanese_question: tuple[bytes, str]) -> None:
    _, keyword = japanese_question
    hold_talk_button(page, 3.0)
    sync_api.expect(page.locator("#status")).not_to_have_text("Listening…")

    page.wait_for_function(
        """keyword => {
            const s = window.voiceState;
            return s.error !== null || (s.transcript.includes(keyword) && s.reply.length > 0
                && s.timings !== null && s.audioChunksPlayed >= 1);
        }""",
        arg=keyword,
        timeout=SPEECH_TIMEOUT_MS,
        polling=100,
    )
    state = voice_state(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-dialogue.png"), full_page=True)

    assert state["error"] is None, state["error"]
    assert keyword in state["transcript"]
    assert state["language"] == "ja"
    assert state["events"][0] == "transcript"
    assert state["events"][-1] == "done"
    assert state["audioChunksReceived"] == state["timings"]["sentences"] >= 1
    assert [sentence["index"] for sentence in state["sentences"]] == list(range(state["audioChunksReceived"]))
    assert state["audioSecondsScheduled"] > 0.3
    assert state["timings"]["time_to_first_audio_ms"] <= state["timings"]["total_ms"]
    # What the page shows is what it heard and said, tagged with its language for fonts and screen readers.
    sync_api.expect(page.locator("#transcript")).to_contain_text(keyword)
    sync_api.expect(page.locator("#transcript")).to_have_attribute("lang", "ja")
    for sentence in state["sentences"]:
        sync_api.expect(page.locator("#reply")).to_contain_text(sentence["text"].strip())
    sync_api.expect(page.locator("#t-ttfa")).to_contain_text("ms")
    sync_api.expect(page.locator("#history li")).to_have_count(1)

    # Every sentence plays to its end; then the page is done.
    page.wait_for_function(
        "() => window.voiceState.audioChunksPlayed === window.voiceState.audioChunksReceived",
        timeout=60_000,
    )
    sync_api.expect(page.locator("#status")).to_have_text("Done — hold to ask again")
    # ... back to back: each sentence starts where the one before ends.
    schedule = voice_state(page)["audioSchedule"]
    assert [entry["index"] for entry in schedule] == list(range(len(schedule)))
    for before, after in itertools.pairwise(schedule):
        assert after["startAt"] == pytest.approx(before["startAt"] + before["duration"], abs=0.002)

    # A new conversation forgets the old session on the server and starts a new id.
    old_session = state["sessionId"]
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.get_by_role("button", name="New conversation").click()
    assert deleted.value.status == 200
    assert deleted.value.json() == {"session_id": old_session, "deleted": True}
    new_state = voice_state(page)
    assert new_state["sessionId"] != old_session
    assert new_state["error"] is None
    stored = page.evaluate("() => sessionStorage.getItem('voice-orchestrator.session-id')")
    assert stored == new_state["sessionId"]
    sync_api.expect(page.locator("#history li")).to_have_count(0)


def test_the_japanese_voice_picked_goes_with_the_question_and_is_remembered(page: Any) -> None:
    """The picker lists the server's Japanese voices (GET /v1/audio/voices), the default marked; the one
    picked is sent as the dialogue's `voice` and is still picked after a reload."""
    voice = page.locator("#voice")
    voice.select_option("mei")  # waits until the page has listed the voices
    options = voice.locator("option").all_inner_texts()
    assert options[0] == "Server default"
    assert {"jf_alpha", "mei"} <= {option.removesuffix(" (default)") for option in options}
    assert "en_US-joe-medium" not in options  # English is read by the English voice whatever is picked
    assert len([option for option in options if option.endswith(" (default)")]) == 1
    hold_talk_button(page, 3.0)
    page.wait_for_function(
        "() => window.voiceState.error !== null || window.voiceState.timings !== null",
        timeout=SPEECH_TIMEOUT_MS,
    )
    state = voice_state(page)
    assert state["error"] is None, state["error"]
    assert {sentence["voice"] for sentence in state["sentences"]} == {"openjtalk:mei"}  # the server spoke it
    page.reload()
    sync_api.expect(page.locator("#voice")).to_have_value("mei")


def test_too_short_recording_shows_the_typed_error(page: Any) -> None:
    page.keyboard.down("Space")  # the space bar is a talk button too
    page.wait_for_timeout(200)
    page.keyboard.up("Space")

    page.wait_for_function("() => window.voiceState.error !== null", timeout=SPEECH_TIMEOUT_MS)
    state = voice_state(page)
    assert state["error"]["error_code"] == "AUDIO_TOO_SHORT", state["error"]
    alert = page.get_by_role("alert")
    sync_api.expect(alert).to_be_visible()
    sync_api.expect(alert).to_contain_text("AUDIO_TOO_SHORT")
    sync_api.expect(page.locator("#status")).to_have_text("Error: AUDIO_TOO_SHORT")
    assert state["transcript"] == ""
    assert state["audioChunksReceived"] == 0
