"""What the packaged language models answer to everyday questions, and what the reply guard lets through.

    python -m bench.bench_replies                              # both packaged models, in-process (llama.cpp)
    python -m bench.bench_replies --speak                      # ...and synthesise each reply (real seconds)
    python -m bench.bench_replies --repetition-penalty 1.0 1.1 # compare penalties
    python -m bench.bench_replies --save replies.json          # ...keeping the models' deltas
    python -m bench.bench_replies --replay replies.json --speak # re-analyse them (other limits, real seconds)
    python -m bench.bench_replies --url http://127.0.0.1:8000  # spoken questions through the running app

Engine mode asks each model (`--models`: the packaged Gemma 3 270M base with its few-shot prompt,
SmolLM2-135M-Instruct with its chat template) ~20 Japanese and ~20 English questions and lets it run to
`max_tokens` (the raw reply); its deltas are then replayed through the reply guard exactly as the dialogue
pipeline streams them (the guarded reply, and when the guard stopped pulling the model). Spoken seconds are
estimated from the characters (reply_guard.SPEECH_CHARS_PER_SECOND) or, with `--speak`, measured by
synthesising the guarded reply with the embedded TTS. URL mode posts each question, spoken by bench/clips.py
(Open JTalk for Japanese, Piper for English), to /api/orchestrator/dialogue and reads the transcript, reply
and spoken seconds from the response headers: whatever model and guard the app runs.

The summary per model and language: replies cut by the guard (by reason), replies of more than two sentences,
the longest spoken reply, replies in the wrong language, and empty replies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from voice_orchestrator.protocol import ReplyRequest
from voice_orchestrator.reply_guard import (
    DEFAULT_CHARS_PER_SECOND,
    SPEECH_CHARS_PER_SECOND,
    CutReason,
    ReplyGuard,
    ReplyLimits,
)
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.text import clean_for_speech

QUESTIONS: dict[str, list[str]] = {
    "ja": [
        "今日の天気はどうですか？",
        "今何時ですか？",
        "日本の首都はどこですか？",
        "富士山の高さはどのくらいですか？",
        "晩ごはんは何がいいですか？",
        "おすすめの日本料理は何ですか？",
        "東京から大阪まで新幹線でどのくらいかかりますか？",
        "京都でおすすめの観光地はどこですか？",
        "一年は何日ですか？",
        "月について教えてください。",
        "桜はいつ咲きますか？",
        "水は何度で沸騰しますか？",
        "カレーの作り方を教えてください。",
        "よく眠るにはどうしたらいいですか？",
        "英語を勉強するにはどうしたらいいですか？",
        "日本で一番長い川は何ですか？",
        "十足す二十はいくつですか？",
        "猫について教えてください。",
        "週末は何をしたらいいですか？",
        "地球から月までの距離はどのくらいですか？",
    ],
    "en": [
        "What's the weather like today?",
        "What time is it?",
        "What is the capital of Japan?",
        "How tall is Mount Fuji?",
        "What should I have for dinner?",
        "What is a good Japanese dish to try?",
        "How long does it take to fly from London to New York?",
        "What should I see in Paris?",
        "How many days are there in a year?",
        "Tell me about the moon.",
        "When do cherry blossoms bloom?",
        "At what temperature does water boil?",
        "How do I make a cup of tea?",
        "How can I sleep better?",
        "How do I learn Japanese?",
        "What is the longest river in the world?",
        "What is ten plus twenty?",
        "Tell me about cats.",
        "What should I do this weekend?",
        "How far is the moon from the Earth?",
    ],
}

# Questions with one right answer, and the words that say it (any of them, in the guarded reply).
FACTS: dict[str, tuple[str, ...]] = {
    "日本の首都はどこですか？": ("東京",),
    "富士山の高さはどのくらいですか？": ("3776", "3,776", "三千七百七十六"),
    "東京から大阪まで新幹線でどのくらいかかりますか？": ("2時間", "二時間", "2時間半", "3時間", "三時間"),
    "一年は何日ですか？": ("365", "三百六十五"),
    "桜はいつ咲きますか？": ("春", "3月", "4月", "三月", "四月"),
    "水は何度で沸騰しますか？": ("100", "百度"),
    "日本で一番長い川は何ですか？": ("信濃川",),
    "十足す二十はいくつですか？": ("30", "三十"),
    "地球から月までの距離はどのくらいですか？": (
        "38万",
        "三十八万",
        "384,400",
        "384400",
        "380,000",
        "38.4万",
    ),
    "What is the capital of Japan?": ("tokyo",),
    "How tall is Mount Fuji?": ("3,776", "3776", "12,388", "12,389", "12388", "3,800", "3800"),
    "How long does it take to fly from London to New York?": ("7 hours", "8 hours", "seven", "eight"),
    "How many days are there in a year?": ("365",),
    "When do cherry blossoms bloom?": ("spring", "march", "april"),
    "At what temperature does water boil?": ("100", "212"),
    "What is the longest river in the world?": ("nile", "amazon"),
    "What is ten plus twenty?": ("30", "thirty"),
    "How far is the moon from the Earth?": ("384,400", "384400", "238,900", "238900", "239,000", "384,000"),
}
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")
_LATIN = re.compile(r"[A-Za-z]")

PackagedModel = Literal["gemma-3-270m", "smollm2-135m-instruct"]
MODELS: dict[str, PackagedModel] = {"gemma": "gemma-3-270m", "smollm2": "smollm2-135m-instruct"}


@dataclass
class Answer:
    language: str
    question: str
    raw: str
    guarded: str
    cut: CutReason | None
    seconds: float  # the guarded reply, spoken (estimated or synthesised)
    raw_seconds: float  # the raw reply, estimated
    llm_ms: float  # the model to its end
    guarded_llm_ms: float  # the model until the guard stopped pulling it
    transcript: str = ""

    @property
    def wrong_language(self) -> bool:
        """Japanese asked, mostly Latin letters answered (or the other way round)."""
        japanese, latin = len(_JAPANESE.findall(self.raw)), len(_LATIN.findall(self.raw))
        return japanese < latin if self.language == "ja" else japanese > 0

    @property
    def fact_right(self) -> bool | None:
        """None for questions without one right answer."""
        words = FACTS.get(self.question)
        if words is None:
            return None
        return any(word in self.guarded.lower() for word in words)


@dataclass
class Run:
    name: str
    answers: list[Answer] = field(default_factory=list)


def estimated_seconds(text: str, language: str) -> float:
    spoken = ReplyLimits().spoken_chars(text, language)
    return spoken / SPEECH_CHARS_PER_SECOND.get(language, DEFAULT_CHARS_PER_SECOND)


def sentence_count(text: str) -> int:
    splitter = SentenceSplitter(soft_split_chars=10_000)
    return len(splitter.feed(text) + splitter.flush())


def replay(
    deltas: list[tuple[float, str]], language: str, limits: ReplyLimits, args: argparse.Namespace
) -> tuple[ReplyGuard, float]:
    """The guard fed the recorded deltas as the streaming pipeline feeds them (chunks end at commas once long
    enough); and when it stopped pulling the model (ms)."""
    guard = ReplyGuard(language, limits, args.soft_split_chars, args.first_chunk_chars)
    for at_ms, delta in deltas:
        guard.feed(delta)
        if guard.cut is not None:
            return guard, at_ms
    guard.finish()
    return guard, deltas[-1][0] if deltas else 0.0


class Speaker:
    """Real spoken seconds from the embedded TTS (Kokoro for Japanese, Piper for English)."""

    def __init__(self, cache_dir: Path) -> None:
        from voice_orchestrator.engines import create_tts_engine
        from voice_orchestrator.settings import TextToSpeechSettings

        self._engine = create_tts_engine(TextToSpeechSettings(), cache_dir)

    def seconds(self, text: str, language: str) -> float:
        return self._engine.synthesize(text, language).duration_s if text else 0.0


# What a model wrote for one question: (ms since the request, delta) pairs.
Recorded = list[tuple[float, str]]


@dataclass
class Recording:
    name: str
    answers: list[tuple[str, str, Recorded]]  # language, question, deltas


async def engine_run(model: PackagedModel, penalty: float, args: argparse.Namespace) -> Recording:
    from voice_orchestrator.engines import create_llm_engine
    from voice_orchestrator.settings import LanguageModelSettings

    settings = LanguageModelSettings(
        packaged_model=model,
        repetition_penalty=penalty,
        max_tokens=args.max_tokens,
        threads=args.threads,
    )
    engine = create_llm_engine(settings, args.cache_dir)
    await engine.probe()
    recording = Recording(f"{model} rp={penalty:g} ({engine.info.extra.get('prompt_style')})", [])
    print(f"generating: {recording.name}", flush=True)
    for language in args.languages:
        for question in QUESTIONS[language]:
            started = time.perf_counter()
            deltas: Recorded = []
            async for delta in engine.stream(ReplyRequest(text=question, language=language)):
                deltas.append(((time.perf_counter() - started) * 1000.0, delta))
            recording.answers.append((language, question, deltas))
    return recording


def analyse(recording: Recording, args: argparse.Namespace, speaker: Speaker | None) -> Run:
    """Each recorded reply through the guard, as the streaming pipeline would have spoken it."""
    limits = ReplyLimits(max_sentences=args.max_sentences, max_reply_seconds=args.max_seconds)
    run = Run(recording.name)
    print(f"\n## {run.name}")
    for language, question, deltas in recording.answers:
        raw = clean_for_speech("".join(delta for _, delta in deltas))
        guard, guarded_ms = replay(deltas, language, limits, args)
        # Cleaned chunk by chunk, as the pipeline speaks them ("2. Pour…" loses its list number).
        joiner = "" if language == "ja" else " "
        guarded = joiner.join(filter(None, (clean_for_speech(chunk) for chunk in guard.accepted)))
        seconds = speaker.seconds(guarded, language) if speaker else estimated_seconds(guarded, language)
        answer = Answer(
            language,
            question,
            raw,
            guarded,
            guard.cut,
            seconds,
            estimated_seconds(raw, language),
            deltas[-1][0] if deltas else 0.0,
            guarded_ms,
        )
        run.answers.append(answer)
        show(answer)
    return run


def save(recordings: list[Recording], path: Path) -> None:
    runs = [{"name": r.name, "answers": [list(answer) for answer in r.answers]} for r in recordings]
    path.write_text(json.dumps({"runs": runs}, ensure_ascii=False, indent=1))


def load(path: Path) -> list[Recording]:
    runs = json.loads(path.read_text())["runs"]
    return [
        Recording(
            run["name"],
            [
                (lang, question, [(float(ms), str(text)) for ms, text in deltas])
                for lang, question, deltas in run["answers"]
            ],
        )
        for run in runs
    ]


def url_run(args: argparse.Namespace) -> Run:
    import httpx

    from bench.clips import english_clip, japanese_clip

    run = Run(f"app at {args.url}")
    print(f"\n## {run.name}")
    with httpx.Client(timeout=180) as client:
        for language in args.languages:
            for question in QUESTIONS[language]:
                clip = japanese_clip(question) if language == "ja" else english_clip(question)
                data = {"language": language} if args.given_language else None
                response = client.post(
                    f"{args.url}/api/orchestrator/dialogue", files={"audio": ("q.wav", clip)}, data=data
                )
                if response.status_code != 200:
                    print(f"[{language}] {question} -> HTTP {response.status_code} {response.text[:200]}")
                    continue
                headers = response.headers
                reply = unquote(headers["X-Output-Text"])
                cut = headers.get("X-Reply-Cut")  # shown when the app reports it
                answer = Answer(
                    language,
                    question,
                    reply,
                    reply,
                    CutReason(cut) if cut in set(CutReason) else None,
                    float(headers["X-Output-Duration"]),
                    estimated_seconds(reply, language),
                    float(headers["X-Processing-Time-LLM"]),
                    float(headers["X-Processing-Time-LLM"]),
                    transcript=unquote(headers["X-Input-Text"]),
                )
                run.answers.append(answer)
                show(answer)
    return run


def show(answer: Answer) -> None:
    heard = f" (heard: {answer.transcript})" if answer.transcript else ""
    print(f"[{answer.language}] {answer.question}{heard}")
    print(f"   raw     ({answer.raw_seconds:4.1f} s est, {answer.llm_ms:5.0f} ms): {answer.raw}")
    if answer.cut or "".join(answer.guarded.split()) != "".join(answer.raw.split()):
        print(f"   guarded ({answer.seconds:4.1f} s, cut: {answer.cut}): {answer.guarded}")
    else:
        print(f"   guarded ({answer.seconds:4.1f} s): unchanged")


def summary(runs: list[Run], languages: list[str]) -> None:
    print(
        "\n| model | lang | n | cut by the guard | raw > 2 sentences | spoken > 2 sentences "
        "| longest spoken s | longest raw s (est.) | facts right | wrong language | empty "
        "| LLM ms p50 raw → guarded |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        for language in languages:
            answers = [answer for answer in run.answers if answer.language == language]
            if not answers:
                continue
            reasons = Counter(str(answer.cut) for answer in answers if answer.cut)
            cut = sum(reasons.values())
            by_reason = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
            longest = max(answers, key=lambda answer: answer.seconds)
            facts = [answer.fact_right for answer in answers if answer.fact_right is not None]
            cells = [
                run.name,
                language,
                str(len(answers)),
                f"{cut}" + (f" ({by_reason})" if by_reason else ""),
                str(sum(sentence_count(answer.raw) > 2 for answer in answers)),
                str(sum(sentence_count(answer.guarded) > 2 for answer in answers)),
                f"{longest.seconds:.1f}",
                f"{max(answer.raw_seconds for answer in answers):.1f}",
                f"{sum(facts)}/{len(facts)}",
                str(sum(answer.wrong_language for answer in answers)),
                str(sum(not answer.guarded for answer in answers)),
                f"{statistics.median(a.llm_ms for a in answers):.0f} → "
                f"{statistics.median(a.guarded_llm_ms for a in answers):.0f}",
            ]
            print("| " + " | ".join(cells) + " |")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="post spoken questions to this running app instead of the engines")
    parser.add_argument(
        "--given-language", action="store_true", help="--url: send the language, skip detection"
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--languages", nargs="+", choices=sorted(QUESTIONS), default=["ja", "en"])
    parser.add_argument("--repetition-penalty", nargs="+", type=float, default=[1.1])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-sentences", type=int, default=ReplyLimits().max_sentences)
    parser.add_argument("--max-seconds", type=float, default=ReplyLimits().max_reply_seconds)
    parser.add_argument("--soft-split-chars", type=int, default=40, help="as stream_soft_split_chars")
    parser.add_argument("--first-chunk-chars", type=int, default=10, help="as stream_first_chunk_chars")
    parser.add_argument("--speak", action="store_true", help="synthesise the guarded replies (real seconds)")
    parser.add_argument("--save", type=Path, help="write the models' deltas (JSON) for --replay")
    parser.add_argument(
        "--replay", type=Path, help="analyse deltas saved by --save instead of running models"
    )
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "voice-orchestrator")
    return parser.parse_args()


async def main() -> None:
    args = arguments()
    if args.url:
        runs = [url_run(args)]
    else:
        if args.replay:
            recordings = load(args.replay)
        else:
            recordings = [
                await engine_run(MODELS[name], penalty, args)
                for name in args.models
                for penalty in args.repetition_penalty
            ]
        if args.save:
            save(recordings, args.save)
        speaker = Speaker(args.cache_dir) if args.speak else None
        runs = [analyse(recording, args, speaker) for recording in recordings]
    summary(runs, args.languages)


if __name__ == "__main__":
    asyncio.run(main())
