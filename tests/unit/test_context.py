"""A prompt counted against the model's context before generating: earlier turns dropped oldest first so a
long conversation never fails; a prompt that cannot fit even alone is the typed 400 (OpenAI's code on /v1)."""

from __future__ import annotations

import pytest

from voice_orchestrator.engines.prompts import fit_context
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode, openai_error
from voice_orchestrator.protocol import ChatMessage, ReplyRequest, Turn


def words(request: ReplyRequest) -> int:
    """A stand-in tokenizer: a token a word, over the question, the history and the messages."""
    texts = [request.text, *(f"{t.user} {t.assistant}" for t in request.history)]
    texts += [message.content for message in request.messages or []]
    return sum(len(text.split()) for text in texts)


def test_a_request_that_fits_is_left_alone() -> None:
    request = ReplyRequest(text="a b c", language="en", history=[Turn(user="u", assistant="a")])
    assert fit_context(request, words, context=100, max_tokens=10) is request


def test_a_sessions_earlier_turns_go_oldest_first() -> None:
    history = [Turn(user=f"q{n} q", assistant=f"a{n} a") for n in range(10)]  # 4 words a turn
    request = ReplyRequest(text="now what", language="en", history=history)
    fitted = fit_context(request, words, context=20, max_tokens=6)
    assert [turn.user for turn in fitted.history] == ["q7 q", "q8 q", "q9 q"]  # 2 + 12 + 6 = 20
    assert fitted.text == "now what"


def test_a_clients_messages_keep_the_system_and_the_last_user_message() -> None:
    messages = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content="one two three"),
        ChatMessage(role="assistant", content="four five six"),
        ChatMessage(role="user", content="last question"),
    ]
    request = ReplyRequest(text="last question", language="en", messages=messages)
    fitted = fit_context(request, words, context=8, max_tokens=4)
    assert [message.content for message in fitted.messages or []] == ["be brief", "last question"]


def test_a_prompt_that_cannot_fit_alone_is_a_400_with_the_counts() -> None:
    request = ReplyRequest(
        text="x", language="en", messages=[ChatMessage(role="user", content="word " * 500)]
    )
    with pytest.raises(OrchestratorError) as refused:
        fit_context(request, words, context=100, max_tokens=10)
    assert refused.value.code is OrchestratorErrorCode.CONTEXT_LENGTH_EXCEEDED
    assert refused.value.http_status == 400
    assert refused.value.details == {"field": "messages", "prompt_tokens": 501, "max_context_tokens": 100}
    shape = openai_error(refused.value.code.value, refused.value.message, refused.value.details, 400)
    assert shape["error"]["code"] == "context_length_exceeded"
    assert shape["error"]["param"] == "messages"


def test_a_prompt_that_fits_but_leaves_little_room_is_answered_shorter() -> None:
    request = ReplyRequest(text="a " * 95, language="en")
    assert fit_context(request, words, context=100, max_tokens=10) is request  # llama.cpp caps the reply
