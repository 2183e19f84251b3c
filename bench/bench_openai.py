"""What the `/v1` route adds to speech recognition: `POST /v1/audio/transcriptions` (the official `openai`
client -> Serve's proxy -> the ingress: upload, decoding, admission -> the SpeechToText replica) against the
same engine, with the same settings, called in this process on the same clips.

    python -m bench.bench_openai --serve              # serves serve_config.yaml, 10 clips per language
    python -m bench.bench_openai --url http://HOST:PORT --limit 45

Clips are bench/stt_clips.py's (Japanese and English, 0.5-25 s of speech, noise, seven sample rates), sent
as 16 kHz PCM16 WAV. For each clip the route and the engine are timed one after the other (order alternating),
so that load from elsewhere falls on both alike. Printed per language: p50/p95 of each, the per-clip overhead
(route minus engine) and the route/engine ratio, and how many transcripts agree (same model and settings:
they should all agree).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import openai
import yaml

from bench.bench_dialogue import percentile
from bench.serving import ROOT, served
from bench.stt_clips import Clip, evaluation_clips
from voice_orchestrator.audio import AudioLimits, decode_audio, encode_wav_pcm16
from voice_orchestrator.engines.faster_whisper import FasterWhisperEngine
from voice_orchestrator.settings import SpeechToTextSettings

CACHE_DIR = Path.home() / ".cache" / "voice-orchestrator"


def profile_stt_settings() -> SpeechToTextSettings:
    """The SpeechToText settings `serve run serve_config.yaml` gives its replica."""
    args = yaml.safe_load((ROOT / "serve_config.yaml").read_text())["applications"][0]["args"]
    return SpeechToTextSettings.model_validate(args.get("stt", {}))


@contextmanager
def app(url: str | None) -> Iterator[str]:
    if url is not None:
        yield url
        return
    with served(ROOT, 8012) as served_url:
        yield served_url


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default=None, help="a running server (default: --serve)")
    parser.add_argument("--serve", action="store_true", help="serve the working tree's serve_config.yaml")
    parser.add_argument("--limit", type=int, default=10, help="clips per language (45: all)")
    args = parser.parse_args()
    if args.url is None and not args.serve:
        parser.error("give --url or --serve")

    clips = evaluation_clips()
    chosen: list[Clip] = []
    for language in ("ja", "en"):  # spread over the set: words, sentences, long joined ones
        own = [c for c in clips if c.recipe.language == language]
        chosen += own[:: max(1, len(own) // max(1, args.limit))][: args.limit]
    settings = profile_stt_settings()
    engine = FasterWhisperEngine(settings, CACHE_DIR)
    limits = AudioLimits(0.1, 300.0)
    print(
        f"{len(chosen)} clips, {min(c.seconds for c in chosen):.1f}-{max(c.seconds for c in chosen):.1f} s; "
        f"engine: {engine.info.model}, fitted window {settings.fitted_window}, "
        f"expected languages {settings.expected_languages}"
    )
    route_ms: dict[str, list[float]] = {"ja": [], "en": []}
    engine_ms: dict[str, list[float]] = {"ja": [], "en": []}
    agree: dict[str, int] = {"ja": 0, "en": 0}
    differ: list[str] = []
    with app(args.url) as url, openai.OpenAI(base_url=f"{url}/v1", api_key="bench", max_retries=0) as client:
        client.audio.transcriptions.create(model="whisper-1", file=("warm.wav", _wav(chosen[0]), "audio/wav"))
        engine.transcribe(decode_audio(_wav(chosen[0]), limits).samples, None)
        for index, clip in enumerate(chosen):
            wav = _wav(clip)
            language = clip.recipe.language
            heard: dict[str, str] = {}
            for turn in ("route", "engine") if index % 2 == 0 else ("engine", "route"):
                started = time.perf_counter()
                if turn == "route":
                    heard[turn] = client.audio.transcriptions.create(
                        model="whisper-1", file=("clip.wav", wav, "audio/wav")
                    ).text
                    route_ms[language].append((time.perf_counter() - started) * 1000)
                else:
                    heard[turn] = engine.transcribe(decode_audio(wav, limits).samples, None).text.strip()
                    engine_ms[language].append((time.perf_counter() - started) * 1000)
            agree[language] += heard["route"] == heard["engine"]
            if heard["route"] != heard["engine"]:
                differ.append(
                    f"  {clip.recipe.name} {clip.seconds:.1f} s: {heard['route']!r} / {heard['engine']!r}"
                )

    print(
        f"\n{'':4}{'route p50':>10}{'p95':>8}{'engine p50':>12}{'p95':>8}"
        f"{'overhead p50':>14}{'ratio p50':>11}"
    )
    for language in ("ja", "en"):
        routes, engines = route_ms[language], engine_ms[language]
        if not routes:
            continue
        overheads = [r - e for r, e in zip(routes, engines, strict=True)]
        ratios = [r / e for r, e in zip(routes, engines, strict=True)]
        print(
            f"{language:4}{percentile(routes, 50):>10.0f}{percentile(routes, 95):>8.0f}"
            f"{percentile(engines, 50):>12.0f}{percentile(engines, 95):>8.0f}"
            f"{statistics.median(overheads):>11.0f} ms{statistics.median(ratios):>11.2f}"
            f"   transcripts agree {agree[language]}/{len(routes)}"
        )
    if differ:
        print("\ntranscripts that differ (route / engine):", *differ, sep="\n")


def _wav(clip: Clip) -> bytes:
    return encode_wav_pcm16(clip.samples, 16_000)


if __name__ == "__main__":
    main()
