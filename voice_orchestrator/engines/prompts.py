"""Prompts shared by the language-model engines: a few-shot block per language for base models, and the
system prompt for models with a chat template."""

from __future__ import annotations

from collections.abc import Callable

from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import ReplyRequest, Turn

# Few-shot prompts for base models (no chat template). One block per language: with mixed Japanese and
# English examples the packaged Gemma 270M answered Japanese questions in English. The last example answers
# in two sentences, so "tell me about ..." gets two (which streaming can start speaking after the first).
FEW_SHOT_PROMPTS: dict[str, str] = {
    "ja": (
        "以下は、親切な音声アシスタントとユーザーの会話です。"
        "アシスタントは日本語で、一文か二文で短く答えます。\n\n"
        "ユーザー: 日本の首都はどこですか？\n"
        "アシスタント: 東京です。\n"
        "ユーザー: 富士山の高さはどのくらいですか？\n"
        "アシスタント: 約三千七百七十六メートルです。\n"
        "ユーザー: 朝ごはんは何がいいですか？\n"
        "アシスタント: ご飯とお味噌汁はいかがでしょうか。\n"
        "ユーザー: 京都について教えてください。\n"
        "アシスタント: 京都は日本の古い都です。お寺や神社がたくさんあります。\n"
        "{history}"
        "ユーザー: {question}\n"
        "アシスタント:"
    ),
    "en": (
        "The following is a conversation between a user and a helpful voice assistant. "
        "The assistant answers in one or two short sentences.\n\n"
        "User: What is the capital of France?\n"
        "Assistant: The capital of France is Paris.\n"
        "User: How many days are there in a week?\n"
        "Assistant: There are seven days in a week.\n"
        "User: What should I eat for breakfast?\n"
        "Assistant: Oatmeal with fruit is a good choice.\n"
        "User: Tell me about Kyoto.\n"
        "Assistant: Kyoto was the capital of Japan for a thousand years. It is famous for its temples.\n"
        "{history}"
        "User: {question}\n"
        "Assistant:"
    ),
}
FEW_SHOT_STOP = ["\n", "ユーザー:", "User:"]

SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Reply in the user's language ({language}) in one or two short "
    "spoken sentences. Never use markdown, lists or emoji."
)

# The OpenAI chat route, for a conversation that brings no system message of its own.
CHAT_SYSTEM_PROMPT = "You are a helpful assistant. Reply in the user's language ({language}), briefly."

# The speaker labels of each few-shot block, for writing a session's earlier turns in the same pattern.
FEW_SHOT_LABELS: dict[str, tuple[str, str]] = {
    "ja": ("ユーザー", "アシスタント"),
    "en": ("User", "Assistant"),
}


def _one_line(text: str) -> str:
    # One line per turn: a newline inside a turn would end the prompt's pattern early.
    return " ".join(text.split())


def client_conversation(request: ReplyRequest) -> tuple[str, list[Turn], str]:
    """A client's messages as (system text, earlier user/assistant turns, the last user message), for the
    few-shot prompt of a base model."""
    messages = request.messages or []
    system = "\n".join(message.content for message in messages if message.role == "system")
    turns: list[Turn] = []
    pending: str | None = None
    question = request.text
    last_user = max((i for i, message in enumerate(messages) if message.role == "user"), default=-1)
    for index, message in enumerate(messages):
        if message.role == "user" and index == last_user:
            question = message.content
            break
        if message.role == "user":
            pending = message.content if pending is None else f"{pending} {message.content}"
        elif message.role == "assistant":
            turns.append(Turn(user=pending or "", assistant=message.content))
            pending = None
    return system, turns, question


def few_shot_prompt(request: ReplyRequest) -> str:
    if request.messages is not None:
        # A client's conversation: its system text first, then the block with its turns as the examples' tail.
        system, turns, question = client_conversation(request)
        prompt = few_shot_prompt(
            request.model_copy(update={"messages": None, "history": turns, "text": question})
        )
        return f"{_one_line(system)}\n\n{prompt}" if system.strip() else prompt
    language = request.language if request.language in FEW_SHOT_PROMPTS else "en"
    user, assistant = FEW_SHOT_LABELS[language]
    history = "".join(
        f"{user}: {_one_line(turn.user)}\n{assistant}: {_one_line(turn.assistant)}\n"
        for turn in request.history
    )
    return FEW_SHOT_PROMPTS[language].format(history=history, question=_one_line(request.text))


def chat_messages(request: ReplyRequest) -> list[dict[str, str]]:
    """System prompt, the session's earlier turns, then the question: for models with a chat template. A
    client's own conversation (the OpenAI chat route) goes as written."""
    if request.messages is not None:
        written = [{"role": message.role, "content": message.content} for message in request.messages]
        if any(message.role == "system" for message in request.messages):
            return written
        # Small models answer a bare question badly (SmolLM2-135M babbled French for "What is the capital of
        # France?" and said "The capital of France is Paris." with this line): a conversation without a
        # system message gets this one.
        return [{"role": "system", "content": CHAT_SYSTEM_PROMPT.format(language=request.language)}, *written]
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(language=request.language)}]
    for turn in request.history:
        messages.append({"role": "user", "content": turn.user})
        messages.append({"role": "assistant", "content": turn.assistant})
    messages.append({"role": "user", "content": request.text})
    return messages


def _without_oldest(request: ReplyRequest) -> ReplyRequest | None:
    """The request less its oldest earlier turn: a session's first remembered turn, else a client's first
    message that is neither a system message nor the last user message; None when nothing is left to drop."""
    if request.history:
        return request.model_copy(update={"history": request.history[1:]})
    messages = request.messages or []
    last_user = max((i for i, message in enumerate(messages) if message.role == "user"), default=-1)
    for index, message in enumerate(messages):
        if message.role != "system" and index != last_user:
            return request.model_copy(update={"messages": messages[:index] + messages[index + 1 :]})
    return None


def fit_context(
    request: ReplyRequest, prompt_tokens: Callable[[ReplyRequest], int], context: int, max_tokens: int
) -> ReplyRequest:
    """The request as it fits the model's context, counted with the model's own tokens before generating:
    earlier turns dropped oldest first while the prompt leaves less than `max_tokens` for the reply (so a
    long session never fails); a prompt that does not fit even alone is the typed 400."""
    tokens = prompt_tokens(request)
    while tokens + max_tokens > context and (shorter := _without_oldest(request)) is not None:
        request, tokens = shorter, prompt_tokens(shorter)
    if tokens >= context:
        raise OrchestratorError(
            OrchestratorErrorCode.CONTEXT_LENGTH_EXCEEDED,
            f"The prompt is {tokens} tokens; this model reads at most {context} (with the reply).",
            details={"field": "messages", "prompt_tokens": tokens, "max_context_tokens": context},
        )
    return request
