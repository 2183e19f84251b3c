"""Prompts shared by the language-model engines: a few-shot block per language for base models, and the
system prompt for models with a chat template."""

from __future__ import annotations

from voice_orchestrator.protocol import ReplyRequest

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


# The speaker labels of each few-shot block, for writing a session's earlier turns in the same pattern.
FEW_SHOT_LABELS: dict[str, tuple[str, str]] = {
    "ja": ("ユーザー", "アシスタント"),
    "en": ("User", "Assistant"),
}


def _one_line(text: str) -> str:
    # One line per turn: a newline inside a turn would end the prompt's pattern early.
    return " ".join(text.split())


def few_shot_prompt(request: ReplyRequest) -> str:
    language = request.language if request.language in FEW_SHOT_PROMPTS else "en"
    user, assistant = FEW_SHOT_LABELS[language]
    history = "".join(
        f"{user}: {_one_line(turn.user)}\n{assistant}: {_one_line(turn.assistant)}\n"
        for turn in request.history
    )
    return FEW_SHOT_PROMPTS[language].format(history=history, question=_one_line(request.text))


def chat_messages(request: ReplyRequest) -> list[dict[str, str]]:
    """System prompt, the session's earlier turns, then the question: for models with a chat template."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT.format(language=request.language)}]
    for turn in request.history:
        messages.append({"role": "user", "content": turn.user})
        messages.append({"role": "assistant", "content": turn.assistant})
    messages.append({"role": "user", "content": request.text})
    return messages
