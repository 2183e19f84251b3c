"""The Japanese voices side by side: Kokoro (`jf_alpha`) and OpenJTalk's `mei` (what `auto` picks on a small
CPU), on 20 everyday sentences — synthesis time against the audio's length, and how much of each the packaged
Whisper hears back (character error rate of the round trip: intelligibility, not naturalness; listen to
`--out`'s WAVs for that).

    .venv/bin/python -m bench.bench_japanese_voices [--repeats 3] [--out /tmp/ja-voices]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.bench_stt import errors
from voice_orchestrator.audio import encode_wav_pcm16, resample
from voice_orchestrator.engines.embedded_tts import EmbeddedSpeechEngine
from voice_orchestrator.engines.faster_whisper import load_whisper_model
from voice_orchestrator.protocol import SpeechAudio
from voice_orchestrator.settings import EngineSettings, SpeechToTextSettings

SENTENCES = [
    "晴れです。",
    "はい。",
    "今日は晴れで、気温は二十度です。",
    "明日の天気は雨の予報です。",
    "東京は日本の首都です。",
    "駅までは歩いて十分ほどです。",
    "会議は午後三時から始まります。",
    "お手伝いできることはありますか？",
    "富士山は日本で一番高い山です。",
    "この料理はとてもおいしいですね。",
    "すみません、もう一度お願いします。",
    "電車が五分遅れています。",
    "週末は家族と公園に行きました。",
    "新しいスマートフォンを買いました。",
    "図書館は九時に開きます。",
    "今夜は早く寝ようと思います。",
    "桜の花が咲き始めました。",
    "申し訳ありませんが、その質問には答えられません。",
    "京都には古いお寺がたくさんあります。",
    "ありがとうございます。",
]
VOICES = ["jf_alpha", "mei"]


def timed(engine: EmbeddedSpeechEngine, text: str, voice: str, repeats: int) -> tuple[SpeechAudio, float]:
    speech = engine.synthesize(text, "ja", voice)  # warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        speech = engine.synthesize(text, "ja", voice)
        times.append(time.perf_counter() - started)
    return speech, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write each voice's WAVs here, to listen to")
    args = parser.parse_args()
    settings = EngineSettings()
    engine = EmbeddedSpeechEngine(settings.tts, settings.cache_dir)
    whisper, label = load_whisper_model(SpeechToTextSettings(), settings.cache_dir)
    totals = {voice: {"edits": 0, "chars": 0, "compute": 0.0, "audio": 0.0} for voice in VOICES}
    threads = settings.tts.threads
    print(f"Whisper {label}, beam 1, language ja; medians of {args.repeats}; ONNX threads {threads}")
    print("| sentence | " + " | ".join(f"{v}: time / audio (×), CER" for v in VOICES) + " |")
    print("|---|" + "---|" * len(VOICES))
    for index, text in enumerate(SENTENCES):
        cells = []
        for voice in VOICES:
            speech, seconds = timed(engine, text, voice, args.repeats)
            heard_audio = resample(speech.samples, speech.sample_rate, 16_000)
            segments, _ = whisper.transcribe(heard_audio, language="ja", beam_size=1)
            heard = "".join(segment.text for segment in segments)
            edits, chars = errors(text, heard, "ja")
            total = totals[voice]
            total["edits"] += edits
            total["chars"] += chars
            total["compute"] += seconds
            total["audio"] += speech.duration_s
            ratio = seconds / speech.duration_s
            length = speech.duration_s
            cells.append(f"{seconds * 1000:.0f} ms / {length:.2f} s ({ratio:.2f}), {edits / chars:.0%}")
            if args.out is not None:
                args.out.mkdir(parents=True, exist_ok=True)
                wav = encode_wav_pcm16(speech.samples, speech.sample_rate)
                (args.out / f"{index:02d}-{voice}.wav").write_bytes(wav)
        print(f"| {text} | " + " | ".join(cells) + " |", flush=True)
    summary = [
        f"{voice}: {t['compute'] / t['audio']:.2f} × real time, CER {t['edits'] / t['chars']:.1%}"
        for voice, t in totals.items()
    ]
    print("| **all 20** | " + " | ".join(summary) + " |")


if __name__ == "__main__":
    main()
