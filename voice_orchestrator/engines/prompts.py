"""Prompts shared by the language-model engines: a few-shot block per language for base models, and the
system prompt for models with a chat template."""

from __future__ import annotations

from voice_orchestrator.protocol import ReplyRequest

# Few-shot prompts for base models (no chat template). One block per language: with mixed Japanese and
# English examples the packaged Gemma 270M answered Japanese questions in English.
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
        "User: {question}\n"
        "Assistant:"
    ),
}
FEW_SHOT_STOP = ["\n", "ユーザー:", "User:"]

SYSTEM_PROMPT = (
    "You are a helpful voice assistant. Reply in the user's language ({language}) in one or two short "
    "spoken sentences. Never use markdown, lists or emoji."
)


def few_shot_prompt(request: ReplyRequest) -> str:
    template = FEW_SHOT_PROMPTS.get(request.language, FEW_SHOT_PROMPTS["en"])
    # One line per turn: a newline inside the question would end the prompt's pattern early.
    return template.format(question=" ".join(request.text.split()))
