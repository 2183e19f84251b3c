"""Speech-recognition accuracy and time: faster-whisper's transcribe vs the fitted encoder window.

    python -m bench.bench_stt               # 90 generated clips, every configuration (~15 min on 2 cores)
    python -m bench.bench_stt --limit 10    # the first 10 clips per language: a quick look

The clips (bench/stt_clips.py: Open JTalk and Kokoro Japanese, Piper and espeak-ng English, 0.5-25 s of
speech, noise, seven sample rates) are transcribed by the engine under each configuration, one clip at a
time with every configuration in turn, so that load from other processes falls on all of them alike. Printed
per
configuration: CER (ja) and WER (en) against the text each clip was made from, language-ID accuracy, how many
transcripts equal today's path's (after normalisation), and mean/p50/p95 of the encoder time (every encoder
pass, language detection included) and of the whole transcription. Then the per-stage p50 of the default
for the single question 「今日の天気は？」. Accuracy is deterministic; times depend on what else runs on the
machine.
"""

from __future__ import annotations

import argparse
import functools
import re
import statistics
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.clips import japanese_clip
from bench.stt_clips import Clip, evaluation_clips
from voice_orchestrator.audio import AudioLimits, decode_audio
from voice_orchestrator.engines.faster_whisper import FasterWhisperEngine, load_whisper_model, window_options
from voice_orchestrator.engines.whisper_window import FULL_WINDOW_FRAMES, FittedWindowWhisper, speech_only
from voice_orchestrator.protocol import FloatArray, Transcription
from voice_orchestrator.settings import SpeechToTextSettings

CACHE_DIR = Path.home() / ".cache" / "voice-orchestrator"
# The fitted window with its default margin, bucket and language threshold (on whatever fitted_window says).
DEFAULTS = SpeechToTextSettings(fitted_window=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def normalise(text: str, language: str) -> list[str]:
    """Characters (ja) or words (en), without punctuation, case, width or spacing differences."""
    text = unicodedata.normalize("NFKC", text).lower()
    if language == "ja":
        return [ch for ch in text if unicodedata.category(ch)[0] not in "PSZC"]
    return re.sub(r"[^\w\s]|_", " ", text.replace("'", "")).split()


@functools.cache
def _distance(reference: tuple[str, ...], hypothesis: tuple[str, ...]) -> int:
    previous = list(range(len(hypothesis) + 1))
    for i, token in enumerate(reference, start=1):
        current = [i]
        for j, other in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (token != other)))
        previous = current
    return previous[-1]


def errors(reference: str, hypothesis: str, language: str) -> tuple[int, int]:
    """(edits, reference length) in characters for Japanese, words for English."""
    ref, hyp = normalise(reference, language), normalise(hypothesis, language)
    return _distance(tuple(ref), tuple(hyp)), len(ref)


@dataclass
class Config:
    label: str
    settings: SpeechToTextSettings
    language_given: bool = False


@dataclass
class Outcome:
    transcripts: dict[str, Transcription] = field(default_factory=dict)
    encoder_ms: list[float] = field(default_factory=list)
    passes: int = 0
    full_passes: int = 0
    total_ms: list[float] = field(default_factory=list)
    short_total_ms: list[float] = field(default_factory=list)  # clips of <= 5 s


class EncoderClock:
    """Sums the time of every encoder pass on the shared model (language detection's pass included)."""

    def __init__(self, model: Any) -> None:
        self.elapsed_ms = 0.0
        self.passes = 0
        self.full_passes = 0  # on Whisper's whole 30 s window
        encode: Callable[..., Any] = model.encode

        def timed(features: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return encode(features, *args, **kwargs)
            finally:
                self.elapsed_ms += (time.perf_counter() - started) * 1000
                self.passes += 1
                self.full_passes += features.shape[-1] == FULL_WINDOW_FRAMES

        setattr(model, "encode", timed)  # noqa: B010 - an instance attribute over the method

    def reset(self) -> None:
        self.elapsed_ms, self.passes, self.full_passes = 0.0, 0, 0


EXPECTED = ["ja", "en"]
# (today's path, the fitted window's default), compared by the verdict: language detected, given, restricted.
PAIRS = [
    ("today: transcribe, detected", "fitted default, detected"),
    ("today: transcribe, given", "fitted default, given"),
    ("today: transcribe, expected [ja,en]", "fitted default, expected [ja,en]"),
]


def configurations(margins: list[int], bucket: int) -> list[Config]:
    today = DEFAULTS.model_copy(update={"fitted_window": False})
    default = DEFAULTS.window_margin_frames
    configs = [
        Config(PAIRS[0][0], today),
        Config(PAIRS[1][0], today, True),
        Config(PAIRS[2][0], today.model_copy(update={"expected_languages": EXPECTED})),
    ]
    for margin in sorted(set(margins) - {default}):
        settings = DEFAULTS.model_copy(
            update={"window_margin_frames": margin, "window_bucket_frames": bucket}
        )
        configs.append(Config(f"fitted m={margin} b={bucket}, detected", settings))
    configs.append(Config(PAIRS[0][1], DEFAULTS))
    configs.append(Config(PAIRS[1][1], DEFAULTS, True))
    configs.append(Config(PAIRS[2][1], DEFAULTS.model_copy(update={"expected_languages": EXPECTED})))
    return configs


def run(clips: list[Clip], configs: list[Config], model: Any) -> dict[str, Outcome]:
    clock = EncoderClock(model)
    engines = {
        config.label: FasterWhisperEngine(config.settings, CACHE_DIR, model=model) for config in configs
    }
    for engine in engines.values():  # first calls allocate buffers: keep them out of the numbers
        engine.transcribe(clips[0].samples, None)
    outcomes = {config.label: Outcome() for config in configs}
    for number, clip in enumerate(clips, start=1):
        for config in configs:
            language = clip.recipe.language if config.language_given else None
            clock.reset()
            started = time.perf_counter()
            heard = engines[config.label].transcribe(clip.samples, language)
            total = (time.perf_counter() - started) * 1000
            outcome = outcomes[config.label]
            outcome.transcripts[clip.recipe.name] = heard
            outcome.encoder_ms.append(clock.elapsed_ms)
            outcome.passes += clock.passes
            outcome.full_passes += clock.full_passes
            outcome.total_ms.append(total)
            if clip.seconds <= 5.0:
                outcome.short_total_ms.append(total)
        print(f"  [{number}/{len(clips)}] {clip.recipe.name} {clip.seconds:.1f} s", end="\r", flush=True)
    print()
    return outcomes


def summarise(clips: list[Clip], configs: list[Config], outcomes: dict[str, Outcome]) -> None:
    today = outcomes[configs[0].label]
    header = (
        f"{'configuration':<40}{'ja CER':>8}{'en WER':>8}{'LID ja':>8}{'LID en':>8}{'=today':>8}"
        f"{'passes':>8}{'30 s':>6}{'enc mean':>9}{'enc p50':>8}{'enc p95':>8}"
        f"{'tot mean':>9}{'tot p50':>8}{'tot p95':>8}{'≤5s p50':>8}"
    )
    print(header)
    print("-" * len(header))
    for config in configs:
        outcome = outcomes[config.label]
        rates: dict[str, float] = {}
        lid: dict[str, str] = {}
        for language in ("ja", "en"):
            chosen = [clip for clip in clips if clip.recipe.language == language]
            edits = length = 0
            right = 0
            for clip in chosen:
                heard = outcome.transcripts[clip.recipe.name]
                e, n = errors(clip.recipe.text, heard.text, language)
                edits, length = edits + e, length + n
                right += heard.language == language
            rates[language] = edits / max(1, length)
            lid[language] = f"{right}/{len(chosen)}"
        same = sum(
            normalise(outcome.transcripts[c.recipe.name].text, c.recipe.language)
            == normalise(today.transcripts[c.recipe.name].text, c.recipe.language)
            for c in clips
        )
        enc, tot = outcome.encoder_ms, outcome.total_ms
        print(
            f"{config.label:<40}{rates['ja']:>8.2%}{rates['en']:>8.2%}{lid['ja']:>8}{lid['en']:>8}"
            f"{same:>5}/{len(clips):<2}{outcome.passes:>8}{outcome.full_passes:>6}"
            f"{statistics.mean(enc):>9.0f}{percentile(enc, 50):>8.0f}"
            f"{percentile(enc, 95):>8.0f}{statistics.mean(tot):>9.0f}{percentile(tot, 50):>8.0f}"
            f"{percentile(tot, 95):>8.0f}{percentile(outcome.short_total_ms, 50):>8.0f}"
        )
    print(
        "LID: language identified right ('given' rows: the given language, by definition); =today: same "
        "normalised\ntranscript as the first row; passes: encoder passes in all, 30 s: those on the whole "
        "3000-frame window;\nenc / tot: encoder / whole transcription ms per clip; ≤5s p50: clips of ≤ 5 s"
    )


def verdict(clips: list[Clip], outcomes: dict[str, Outcome]) -> None:
    """The default against today's path, pair by pair: error rate per language and language-ID (the issue's
    bar: equal or lower error, the same language-ID accuracy), and how many clips got better or worse."""
    for today_label, default_label in PAIRS:
        today, default = outcomes[today_label], outcomes[default_label]
        print(f"\n{default_label} vs {today_label}:")
        for language in ("ja", "en"):
            chosen = [clip for clip in clips if clip.recipe.language == language]
            tallies = []
            for outcome in (today, default):
                pairs = [
                    errors(c.recipe.text, outcome.transcripts[c.recipe.name].text, language) for c in chosen
                ]
                lid = sum(outcome.transcripts[c.recipe.name].language == language for c in chosen)
                edits = sum(e for e, _ in pairs)
                tallies.append((edits, edits / max(1, sum(n for _, n in pairs)), lid, [e for e, _ in pairs]))
            better = sum(d < t for t, d in zip(tallies[0][3], tallies[1][3], strict=True))
            worse = sum(d > t for t, d in zip(tallies[0][3], tallies[1][3], strict=True))
            bar = tallies[1][0] <= tallies[0][0] and tallies[1][2] >= tallies[0][2]
            print(
                f"  {language}: today {tallies[0][1]:.2%} ({tallies[0][0]} edits), LID {tallies[0][2]}/"
                f"{len(chosen)}; default {tallies[1][1]:.2%} ({tallies[1][0]} edits), LID {tallies[1][2]}/"
                f"{len(chosen)}; clips better {better}, worse {worse} -> {'no worse' if bar else 'WORSE'}"
            )
    today, default = outcomes[PAIRS[0][0]], outcomes[PAIRS[0][1]]
    print("\ntranscripts where the default differs from today's path, language detected (normalised):")
    for clip in clips:
        a = today.transcripts[clip.recipe.name]
        b = default.transcripts[clip.recipe.name]
        if normalise(a.text, clip.recipe.language) != normalise(b.text, clip.recipe.language):
            print(f"  {clip.recipe.name} ({clip.seconds:.1f} s, {clip.recipe.maker}, {clip.recipe.noise})")
            print(f"    reference: {clip.recipe.text}")
            print(f"    today    : [{a.language}] {a.text}")
            print(f"    default  : [{b.language}] {b.text}")


def token_rate(clips: list[Clip], outcome: Outcome, model: Any) -> None:
    """The highest text tokens per second of speech: the decoder's length bound must stay far above it."""
    rates = []
    for clip in clips:
        speech = speech_only(clip.samples)
        tokens = len(model.hf_tokenizer.encode(outcome.transcripts[clip.recipe.name].text).ids)
        rates.append(tokens / max(speech.size / 16_000, 0.1))
    print(
        f"text tokens per second of speech (default): max {max(rates):.1f}, p95 {percentile(rates, 95):.1f}"
    )


def single_question(model: Any, repeats: int) -> None:
    samples: FloatArray = decode_audio(japanese_clip("今日の天気は？"), AudioLimits(0.0, 60.0)).samples
    window = FittedWindowWhisper(model, window_options(DEFAULTS))
    today = FasterWhisperEngine(DEFAULTS.model_copy(update={"fitted_window": False}), CACHE_DIR, model=model)
    default = FasterWhisperEngine(DEFAULTS, CACHE_DIR, model=model)
    stages: dict[str, list[float]] = {}
    totals: dict[str, list[float]] = {"today, detected": [], "today, given": [], "default, detected": []}
    totals["default, given"] = []
    window.transcribe(samples, None)
    heard = ""
    for _ in range(repeats):
        started = time.perf_counter()
        result = window.transcribe(samples, None)
        elapsed = (time.perf_counter() - started) * 1000
        assert result.transcription is not None
        heard = result.transcription.text
        times = result.times
        for name, value in (
            ("vad", times.vad_ms),
            ("features", times.features_ms),
            ("encode", times.encode_ms),
            ("language", times.detect_ms),
            ("decode", times.decode_ms),
            ("total", elapsed),
        ):
            stages.setdefault(name, []).append(value)
        for label, engine, language in (
            ("today, detected", today, None),
            ("today, given", today, "ja"),
            ("default, detected", default, None),
            ("default, given", default, "ja"),
        ):
            started = time.perf_counter()
            engine.transcribe(samples, language)
            totals[label].append((time.perf_counter() - started) * 1000)
    print(
        f"\n「今日の天気は？」 ({samples.size / 16_000:.2f} s, Open JTalk) -> {heard!r}; p50 of {repeats}, ms"
    )
    print("  default, per stage: " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in stages.items()))
    print("  whole transcription: " + ", ".join(f"{k} {statistics.median(v):.0f}" for k, v in totals.items()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--margins", type=int, nargs="+", default=[100, 300], help="other margins, in 10 ms frames"
    )
    parser.add_argument("--bucket", type=int, default=DEFAULTS.window_bucket_frames, help="bucket, in frames")
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        help="only the first N clips of each language (0: the single question only)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="repeats for the single question")
    args = parser.parse_args()

    started = time.perf_counter()
    clips = evaluation_clips()
    if args.limit is not None:  # 0: only the single question's stage times
        clips = [
            c for lang in ("ja", "en") for c in [c for c in clips if c.recipe.language == lang][: args.limit]
        ]
    seconds = [clip.seconds for clip in clips] or [0.0]
    print(
        f"{len(clips)} clips ({sum(c.recipe.language == 'ja' for c in clips)} ja), {min(seconds):.1f}-"
        f"{max(seconds):.1f} s, ready in {time.perf_counter() - started:.0f} s; whisper-base int8, "
        f"{DEFAULTS.cpu_threads} threads, beam {DEFAULTS.beam_size}, VAD {DEFAULTS.vad_filter}"
    )
    model, _ = load_whisper_model(DEFAULTS, CACHE_DIR)
    if clips:
        configs = configurations(args.margins, args.bucket)
        outcomes = run(clips, configs, model)
        summarise(clips, configs, outcomes)
        verdict(clips, outcomes)
        token_rate(clips, outcomes[PAIRS[0][1]], model)
    single_question(model, args.repeats)
    print(f"\nran in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
