"""Text-to-speech with Coqui TTS (`coqui-tts`, import `TTS`): XTTS-v2 on a GPU, or any Coqui model (VITS...).

One model speaks every language it knows: the request's ISO code ("ja", "en", "zh", "pt-BR") is mapped onto
the model's own language names ("ja", "en", "zh-cn", "pt"); a language the model lacks falls back to
`coqui_language`. Models load from a local checkpoint + config.json (`coqui_model_path`) or by Coqui model id
(`coqui_model_name`, downloaded where the cluster has network). torch is imported only here, lazily.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from voice_orchestrator.engines.assets import file_lock
from voice_orchestrator.errors import unknown_voice
from voice_orchestrator.protocol import EngineInfo, SpeechAudio
from voice_orchestrator.settings import TextToSpeechSettings

logger = logging.getLogger(__name__)

# The name a cloned reference voice is cached under (in a directory private to this engine).
_CLONED_VOICE = "reference"
# Request codes whose model names differ from the ISO 639-1 code (XTTS calls Mandarin "zh-cn").
_LANGUAGE_ALIASES = {"zh": ("zh-cn", "zh"), "zh-hans": ("zh-cn", "zh"), "zh-tw": ("zh", "zh-cn")}


def _import_coqui() -> Any:
    try:
        from TTS.api import TTS
    except ImportError as error:
        from voice_orchestrator.engines import MissingDependencyError

        if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] == "TTS":
            raise MissingDependencyError("coqui", "coqui-tts", "gpu") from None
        # coqui-tts is there but its own imports failed: torch, torchaudio or torchcodec is missing or broken.
        raise MissingDependencyError(
            "coqui", f"coqui-tts with a working torch + torchaudio + torchcodec ({error})", "gpu"
        ) from error
    return TTS


def match_language(requested: str, supported: list[str]) -> str | None:
    """The model's name for the requested language, or None when the model does not speak it."""
    by_lower = {name.lower(): name for name in supported}
    code = requested.strip().lower().replace("_", "-")
    for candidate in (code, *_LANGUAGE_ALIASES.get(code, ()), code.split("-")[0]):
        if candidate in by_lower:
            return by_lower[candidate]
    base = code.split("-")[0]
    for lower, name in by_lower.items():  # "zh" -> "zh-cn" for any model that only has a regional name
        if lower.split("-")[0] == base:
            return name
    return None


class CoquiSpeechEngine:
    def __init__(self, settings: TextToSpeechSettings, cache_dir: Path) -> None:
        coqui = _import_coqui()
        import torch

        device = settings.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            from voice_orchestrator.engines.cuda import no_gpu_message

            raise RuntimeError(
                no_gpu_message(f"tts.device is {device!r}", torch.version.cuda, f"torch {torch.__version__}")
            )
        if device == "cpu":
            torch.set_num_threads(settings.threads)
        # Coqui's synthesizer logs every input sentence at INFO; replies are personal data (log_transcripts).
        logging.getLogger("TTS.utils.synthesizer").setLevel(logging.WARNING)

        started = time.perf_counter()
        if settings.coqui_model_path is not None:
            model_path = settings.coqui_model_path
            config_path = (
                settings.coqui_config_path
                or (model_path if model_path.is_dir() else model_path.parent) / "config.json"
            )
            for what, path in (("coqui_model_path", model_path), ("coqui_config_path", config_path)):
                if not path.exists():
                    raise FileNotFoundError(f"tts.{what} {path} does not exist")
            label = str(model_path)
            self._model_label = model_path.name if model_path.is_dir() else model_path.parent.name
            logger.info("loading Coqui model %s (config %s) on %s", model_path, config_path, device)
            self._tts = coqui(model_path=str(model_path), config_path=str(config_path), progress_bar=False)
        elif settings.coqui_model_name is not None:
            label = settings.coqui_model_name
            self._model_label = label.rsplit("/", 1)[-1]
            _check_model_name(label)
            logger.info("loading Coqui model %s on %s; downloading it if not cached", label, device)
            # Replicas starting together on one node download once: the others wait, then find it cached.
            with file_lock(cache_dir / ".coqui-download.lock"):
                self._tts = coqui(model_name=label, progress_bar=False)
        else:  # the settings validator rules this out
            raise ValueError("tts.engine 'coqui' needs tts.coqui_model_name or tts.coqui_model_path")
        self._tts.to(device)
        synthesizer = self._tts.synthesizer
        self.sample_rate = int(synthesizer.output_sample_rate)
        model = synthesizer.tts_model
        self._languages: list[str] = list(self._tts.languages or [])
        self._speakers: list[str] = list(self._tts.speakers or [])
        logger.info(
            "Coqui model %s loaded in %.1f s: %d Hz, languages %s, %d speakers",
            type(model).__name__,
            time.perf_counter() - started,
            self.sample_rate,
            self._languages or "(one)",
            len(self._speakers),
        )

        self._default_language = self._pick_default_language(settings.coqui_language)
        self._synthesis_kwargs: dict[str, Any] = {}
        self._apply_speed(model, settings.speed)

        # Voice: a cloned reference clip, a configured speaker, or the model's first speaker.
        self._voice_dir: Path | None = None
        self._clone_from: Path | None = None
        self._default_speaker: str | None = None
        if settings.coqui_speaker_wav is not None:
            if not settings.coqui_speaker_wav.is_file():
                raise FileNotFoundError(f"tts.coqui_speaker_wav {settings.coqui_speaker_wav} does not exist")
            if not model.config.supports_cloning:
                raise ValueError(f"{label} cannot clone a voice from tts.coqui_speaker_wav")
            # Cloned on the first synthesis (the warm-up probe), cached here, then loaded by name.
            cache_dir.mkdir(parents=True, exist_ok=True)
            self._voice_dir = Path(tempfile.mkdtemp(prefix="coqui-voice-", dir=cache_dir))
            self._clone_from = settings.coqui_speaker_wav
            self._default_speaker = _CLONED_VOICE
        elif self._speakers:
            speaker = settings.coqui_speaker or self._speakers[0]
            self._check_speaker(speaker)
            self._default_speaker = speaker
        elif settings.coqui_speaker is not None:
            raise ValueError(f"{label} has a single voice: leave tts.coqui_speaker unset")

        # One synthesis at a time: the model is not thread-safe and one call already uses the whole device.
        self._lock = threading.Lock()
        self.info = EngineInfo(
            engine="coqui",
            model=label,
            extra={
                "device": device,
                "sample_rate": self.sample_rate,
                "languages": self._languages,
                "speaker": self._default_speaker,
                # Voices a request may name (the OpenAI routes list them), each speaks the model's languages.
                "voices": [{"id": name, "languages": self._languages} for name in self._speakers],
            },
        )

    def synthesize(self, text: str, language: str, voice: str | None = None) -> SpeechAudio:
        """Blocking: text -> mono float32 speech. `voice` picks another speaker of the model for this call."""
        kwargs = dict(self._synthesis_kwargs)
        language_name = self._language_for(language)
        if language_name is not None:
            kwargs["language"] = language_name
        speaker = self._default_speaker
        if voice is not None:
            if voice not in self._speakers:
                raise unknown_voice(voice, self._speakers)
            speaker = voice
        if speaker is not None:
            kwargs["speaker"] = speaker
        if self._voice_dir is not None:
            kwargs["voice_dir"] = str(self._voice_dir)
        with self._lock:
            if speaker == _CLONED_VOICE and self._clone_from is not None:
                kwargs["speaker_wav"] = str(self._clone_from)  # clone once; later calls load the cached voice
            wav = self._tts.tts(text, split_sentences=True, **kwargs)
            if "speaker_wav" in kwargs:
                self._clone_from = None
        samples = np.asarray(wav, dtype=np.float32).reshape(-1)
        # Coqui pads every sentence with exact zeros; the pause after the last one is only latency.
        samples = np.trim_zeros(samples, trim="b")
        if samples.size == 0 or not np.isfinite(samples).all():
            raise ValueError(f"Coqui produced no usable audio for {len(text)} characters of text")
        return SpeechAudio(
            samples=np.clip(samples, -1.0, 1.0),
            sample_rate=self.sample_rate,
            voice=f"coqui:{speaker or self._model_label}",
        )

    def probe(self) -> None:
        self.synthesize("Hello.", self._default_language or "en")

    def _pick_default_language(self, configured: str | None) -> str | None:
        if not self._languages:
            return None
        if configured is None:
            return self._languages[0]
        language = match_language(configured, self._languages)
        if language is None:
            raise ValueError(f"tts.coqui_language {configured!r} is not one of the model's {self._languages}")
        return language

    def _language_for(self, requested: str) -> str | None:
        if not self._languages:
            return None  # a single-language model: Coqui refuses a language argument
        language = match_language(requested, self._languages) if requested else None
        if language is None:
            logger.debug("language %r not in the model; using %s", requested, self._default_language)
            return self._default_language
        return language

    def _check_speaker(self, speaker: str) -> None:
        if speaker == _CLONED_VOICE and self._voice_dir is not None:
            return
        if speaker not in self._speakers:
            shown = ", ".join(self._speakers[:10]) or "none: the model has a single voice"
            raise ValueError(f"unknown Coqui speaker {speaker!r} (the model's speakers: {shown})")

    def _apply_speed(self, model: Any, speed: float) -> None:
        if speed == 1.0:
            return
        if model.config.model == "xtts":
            self._synthesis_kwargs["speed"] = speed
        elif hasattr(model, "length_scale"):  # VITS and its kin: frames per input token
            model.length_scale = float(model.length_scale) / speed
        else:
            logger.warning("tts.speed is ignored by Coqui %s models", model.config.model)


def _check_model_name(name: str) -> None:
    """Unknown ids and unaccepted licences fail here, with a message, not deep in Coqui (or at a prompt)."""
    if "fairseq" in name:  # tts_models/<iso>/fairseq/vits: Meta's MMS voices, not in Coqui's list
        return
    from TTS.utils.manage import ModelManager

    item: Any = ModelManager(progress_bar=False).models_dict
    parts = name.split("/")
    try:
        if len(parts) != 4:
            raise KeyError(name)
        for part in parts:
            item = item[part]
    except KeyError:
        raise ValueError(
            f"unknown Coqui model id {name!r}: use a full id such as "
            "'tts_models/multilingual/multi-dataset/xtts_v2' (list them with `tts --list_models`)"
        ) from None
    if item.get("tos_required") and os.environ.get("COQUI_TOS_AGREED") != "1":
        raise RuntimeError(
            f"{name} is under the {item.get('license', 'Coqui Public Model License')}: read its terms, "
            "then set COQUI_TOS_AGREED=1 in the replica's environment (runtime_env env_vars) to accept them"
        )
