"""The Coqui TTS engine, for real: coqui-tts + torch on CPU, on a tiny VITS the tests build (tiny_vits.py).

    bash scripts/venv_coqui.sh
    .venv-coqui/bin/python -m pytest tests/engines/test_coqui_engine.py

Where coqui-tts is not installed (the main venv) the model tests skip with that reason; the settings tests,
the language mapping and the missing-dependency error still run there.
"""

from __future__ import annotations

import importlib.util
import io
import threading
import wave
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from voice_orchestrator.audio import AudioLimits, decode_audio, encode_wav_pcm16
from voice_orchestrator.engines import MissingDependencyError, create_tts_engine
from voice_orchestrator.engines.coqui import CoquiSpeechEngine, match_language
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import SpeechAudio, SynthesisRequest
from voice_orchestrator.settings import OrchestratorSettings, TextToSpeechSettings

REPO = Path(__file__).resolve().parents[2]
HAVE_COQUI = importlib.util.find_spec("TTS") is not None
SHORT = "Hi."
LONG = "Hello there, this is a much longer sentence for the tiny model to say out loud."

Model = tuple[Path, Path]  # (checkpoint, config.json)


# --- settings and helpers: no coqui-tts needed ---------------------------------------------------------


def test_embedded_stays_the_default() -> None:
    assert TextToSpeechSettings().engine == "embedded"
    assert OrchestratorSettings().tts.engine == "embedded"


def test_the_gpu_profile_tts_args_are_valid_coqui_settings() -> None:
    raw = yaml.safe_load((REPO / "cluster" / "serve_config.gpu.yaml").read_text())
    [application] = raw["applications"]
    settings = OrchestratorSettings(**application["args"]).tts
    assert settings.engine == "coqui"
    assert settings.coqui_model_name == "tts_models/multilingual/multi-dataset/xtts_v2"
    assert settings.coqui_speaker == "Ana Florence"
    assert settings.device == "cuda"


def test_coqui_settings_without_a_model_are_refused_when_read() -> None:
    with pytest.raises(ValidationError, match=r"coqui_model_name or tts\.coqui_model_path"):
        TextToSpeechSettings(engine="coqui")
    with pytest.raises(ValidationError, match="coqui_config_path needs"):
        TextToSpeechSettings(engine="coqui", coqui_model_name="x", coqui_config_path=Path("config.json"))


@pytest.mark.parametrize(
    ("requested", "supported", "expected"),
    [
        ("ja", ["en", "ja", "zh-cn"], "ja"),
        ("JA", ["en", "ja"], "ja"),
        ("zh", ["en", "zh-cn"], "zh-cn"),  # XTTS's name for Mandarin
        ("pt-BR", ["en", "pt"], "pt"),
        ("en_US", ["en"], "en"),
        ("fr", ["en", "ja"], None),
        ("en", ["en-us", "fr-fr"], "en-us"),
    ],
)
def test_request_languages_map_onto_the_models_names(
    requested: str, supported: list[str], expected: str | None
) -> None:
    assert match_language(requested, supported) == expected


@pytest.mark.skipif(HAVE_COQUI, reason="coqui-tts is installed here")
def test_without_coqui_tts_the_engine_says_what_to_install(tmp_path: Path) -> None:
    settings = TextToSpeechSettings(engine="coqui", coqui_model_path=tmp_path / "model.pth")
    with pytest.raises(MissingDependencyError, match=r"coqui-tts.*voice-orchestrator\[gpu\]"):
        create_tts_engine(settings, tmp_path)


# --- the real engine on a tiny model --------------------------------------------------------------------


@pytest.fixture(scope="module")
def coqui() -> None:
    pytest.importorskip("TTS", reason="coqui-tts not installed: bash scripts/venv_coqui.sh")


@pytest.fixture(scope="module")
def tiny_model(coqui: None, tmp_path_factory: pytest.TempPathFactory) -> Model:
    from tests.engines.tiny_vits import build_tiny_vits

    return build_tiny_vits(tmp_path_factory.mktemp("tiny-vits"))


@pytest.fixture(scope="module")
def polyglot_model(coqui: None, tmp_path_factory: pytest.TempPathFactory) -> Model:
    """Two speakers and two languages, each an embedding the model is conditioned on."""
    from tests.engines.tiny_vits import build_tiny_vits

    return build_tiny_vits(
        tmp_path_factory.mktemp("tiny-vits-polyglot"), speakers=["alice", "bob"], languages=["en", "ja"]
    )


@pytest.fixture(scope="module")
def engine(tiny_model: Model, tmp_path_factory: pytest.TempPathFactory) -> CoquiSpeechEngine:
    checkpoint, config = tiny_model
    settings = TextToSpeechSettings(
        engine="coqui", coqui_model_path=checkpoint, coqui_config_path=config, device="cpu"
    )
    built = create_tts_engine(settings, tmp_path_factory.mktemp("cache"))
    assert isinstance(built, CoquiSpeechEngine)
    return built


def _coqui(model: Model, tmp_path: Path, **settings: Any) -> CoquiSpeechEngine:
    built = create_tts_engine(
        TextToSpeechSettings(engine="coqui", coqui_model_path=model[0], device="cpu", **settings), tmp_path
    )
    assert isinstance(built, CoquiSpeechEngine)
    return built


def _assert_speech(speech: SpeechAudio, text: str, sample_rate: int = 16_000, hop: int = 256) -> None:
    samples = speech.samples
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert speech.sample_rate == sample_rate
    assert np.isfinite(samples).all()
    assert np.abs(samples).max() <= 1.0
    assert float(np.sqrt(np.mean(samples**2))) > 1e-4, "silent"
    # VITS gives every input token (a character, with a blank between characters) at least one frame, and the
    # engine trims only Coqui's zero padding: a whole number of frames, at least one per character.
    assert samples.size % hop == 0
    assert samples.size >= len(text) * hop


def test_loads_a_local_model_and_synthesises_speech(engine: CoquiSpeechEngine) -> None:
    assert engine.info.engine == "coqui"
    assert engine.info.model.endswith("model.pth")
    assert engine.info.extra["sample_rate"] == 16_000
    short = engine.synthesize(SHORT, "en")
    long = engine.synthesize(LONG, "en")
    _assert_speech(short, SHORT)
    _assert_speech(long, LONG)
    assert long.samples.size > 4 * short.samples.size
    assert long.voice.startswith("coqui:")


def test_the_speech_survives_the_wav_encoder(engine: CoquiSpeechEngine) -> None:
    speech = engine.synthesize(LONG, "en")
    data = encode_wav_pcm16(speech.samples, speech.sample_rate)
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16_000)
        assert wav.getnframes() == speech.samples.size
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    np.testing.assert_allclose(pcm / 32767.0, speech.samples, atol=1.0 / 32767.0)
    # and the pipeline's own decoder (what a client's upload goes through) reads it back
    decoded = decode_audio(data, AudioLimits(min_seconds=0.0, max_seconds=60.0))
    assert decoded.source_format == "wav"
    assert decoded.source_sample_rate == 16_000
    assert decoded.duration_s == pytest.approx(speech.duration_s, abs=0.01)


def test_config_beside_the_checkpoint_is_found(tiny_model: Model, tmp_path: Path) -> None:
    speech = _coqui(tiny_model, tmp_path).synthesize(SHORT, "ja")  # a one-language model ignores the language
    _assert_speech(speech, SHORT)


def test_probe_synthesises(engine: CoquiSpeechEngine) -> None:
    engine.probe()


def test_speed_shortens_the_speech(tiny_model: Model, tmp_path: Path, engine: CoquiSpeechEngine) -> None:
    normal = engine.synthesize(LONG, "en").samples.size
    fast = _coqui(tiny_model, tmp_path, speed=2.0).synthesize(LONG, "en").samples.size
    assert fast < 0.75 * normal


def test_a_missing_model_is_a_clear_error(coqui: None, tmp_path: Path) -> None:
    settings = TextToSpeechSettings(engine="coqui", coqui_model_path=tmp_path / "nowhere" / "model.pth")
    with pytest.raises(FileNotFoundError, match=r"tts\.coqui_model_path .*nowhere/model\.pth does not exist"):
        create_tts_engine(settings, tmp_path)


def test_a_missing_config_is_a_clear_error(tiny_model: Model, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tts\.coqui_config_path .*other\.json does not exist"):
        _coqui(tiny_model, tmp_path, coqui_config_path=tmp_path / "other.json")


def test_model_ids_are_checked_before_any_download(
    coqui: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("COQUI_TOS_AGREED", raising=False)
    with pytest.raises(ValueError, match="unknown Coqui model id"):
        create_tts_engine(TextToSpeechSettings(engine="coqui", coqui_model_name="xtts"), tmp_path)
    xtts = TextToSpeechSettings(
        engine="coqui", coqui_model_name="tts_models/multilingual/multi-dataset/xtts_v2"
    )
    with pytest.raises(RuntimeError, match=r"CPML.*COQUI_TOS_AGREED=1"):
        create_tts_engine(xtts, tmp_path)


def test_cuda_without_a_gpu_is_a_clear_error(tiny_model: Model, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RuntimeError, match="sees no CUDA GPU"):
        create_tts_engine(
            TextToSpeechSettings(engine="coqui", coqui_model_path=tiny_model[0], device="cuda"), tmp_path
        )


def test_a_single_voice_model_refuses_a_speaker(tiny_model: Model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="single voice"):
        _coqui(tiny_model, tmp_path, coqui_speaker="alice")
    # A request asking for a voice the model lacks is the client's mistake: 400 INVALID_REQUEST, not a 503.
    with pytest.raises(OrchestratorError, match="Unknown voice 'alice'; available voices: none") as caught:
        _coqui(tiny_model, tmp_path).synthesize(SHORT, "en", voice="alice")
    assert caught.value.code is OrchestratorErrorCode.INVALID_REQUEST


def _spy_on_coqui(engine: CoquiSpeechEngine, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record the arguments of every call into Coqui's API (the real call still runs)."""
    calls: list[dict[str, Any]] = []
    real: Callable[..., Any] = engine._tts.tts

    def tts(text: str, **kwargs: Any) -> Any:
        calls.append(kwargs)
        return real(text, **kwargs)

    monkeypatch.setattr(engine._tts, "tts", tts)
    return calls


def test_speakers_and_languages_of_a_polyglot_model(
    polyglot_model: Model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _coqui(polyglot_model, tmp_path, coqui_speaker="bob", coqui_language="ja")
    assert engine.info.extra["languages"] == ["en", "ja"]
    calls = _spy_on_coqui(engine, monkeypatch)

    english = engine.synthesize(LONG, "en")
    japanese = engine.synthesize(LONG, "ja-JP")
    fallback = engine.synthesize(LONG, "fr")  # not spoken by the model: coqui_language
    alice = engine.synthesize(LONG, "en", voice="alice")
    assert [(call["language"], call["speaker"]) for call in calls] == [
        ("en", "bob"),
        ("ja", "bob"),
        ("ja", "bob"),
        ("en", "alice"),
    ]
    assert (english.voice, alice.voice) == ("coqui:bob", "coqui:alice")
    for speech in (english, japanese, fallback, alice):
        _assert_speech(speech, LONG)
    # Durations are deterministic given text, speaker and language: the fallback really spoke Japanese.
    assert fallback.samples.size == japanese.samples.size

    refused = "Unknown voice 'carol'; available voices: alice, bob"
    with pytest.raises(OrchestratorError, match=refused) as caught:
        engine.synthesize(SHORT, "en", voice="carol")
    assert caught.value.details == {"field": "voice"}
    with pytest.raises(ValueError, match="not one of the model's"):
        _coqui(polyglot_model, tmp_path, coqui_language="fr")


def test_a_polyglot_model_defaults_to_its_first_speaker_and_language(
    polyglot_model: Model, tmp_path: Path
) -> None:
    engine = _coqui(polyglot_model, tmp_path)
    assert engine.info.extra["speaker"] == "alice"
    assert engine.synthesize(SHORT, "de").voice == "coqui:alice"


def test_concurrent_calls_take_turns(engine: CoquiSpeechEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    # The deployment runs synthesize in asyncio.to_thread: several threads at once must not share the model.
    real: Callable[..., Any] = engine._tts.tts
    active = 0
    most = 0
    guard = threading.Lock()

    def tts(text: str, **kwargs: Any) -> Any:
        nonlocal active, most
        with guard:
            active += 1
            most = max(most, active)
        try:
            return real(text, **kwargs)
        finally:
            with guard:
                active -= 1

    monkeypatch.setattr(engine._tts, "tts", tts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda text: engine.synthesize(text, "en"), [LONG, SHORT, LONG, SHORT]))
    assert most == 1
    assert [speech.samples.size for speech in results[:2]] == [speech.samples.size for speech in results[2:]]


def test_xtts_reads_japanese_through_its_text_front_end(coqui: None) -> None:
    # XTTS itself cannot be had here, but its text front end can: Japanese becomes romaji via cutlet, which
    # only coqui-tts's `ja` extra installs (the GPU profile speaks Japanese through it).
    pytest.importorskip("cutlet", reason="coqui-tts[ja] not installed")
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    romaji = VoiceBpeTokenizer().preprocess_text("今日の天気は晴れです。", "ja")
    assert romaji == "kyou no tenki wa hare desu."


# --- through a real Ray Serve deployment ---------------------------------------------------------------


@pytest.fixture(scope="module")
def serve_tts(tiny_model: Model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import ray
    from ray import serve

    from deployments.tts import TextToSpeech
    from graph import _deployment

    settings = OrchestratorSettings(
        cache_dir=tmp_path_factory.mktemp("serve-cache"),
        tts=TextToSpeechSettings(engine="coqui", coqui_model_path=tiny_model[0], device="cpu", threads=1),
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(proxy_location="Disabled")  # handles only: no HTTP port to collide with
        app = _deployment(TextToSpeech).options(ray_actor_options={"num_cpus": 0.5}).bind(settings)
        yield serve.run(app, name="coqui-tts", route_prefix=None)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


@pytest.mark.integration
def test_the_tts_deployment_serves_coqui_speech(serve_tts: Any) -> None:
    speech = serve_tts.synthesize.remote(SynthesisRequest(text=LONG, language="en")).result(timeout_s=120)
    assert isinstance(speech, SpeechAudio)
    _assert_speech(speech, LONG)
    short = serve_tts.synthesize.remote(SynthesisRequest(text=SHORT, language="en")).result(timeout_s=120)
    assert speech.samples.size > 4 * short.samples.size
    info = serve_tts.info.remote().result(timeout_s=30)
    assert (info.engine, info.extra["sample_rate"]) == ("coqui", 16_000)
