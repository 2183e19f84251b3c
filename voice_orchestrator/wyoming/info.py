"""What the Wyoming door advertises (`describe` -> `info`): the loaded Whisper with the languages it can be
asked for, and the loaded voices with their languages, from the same catalog as `GET /v1/models` and
`GET /v1/audio/voices`."""

from __future__ import annotations

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from voice_orchestrator import __version__
from voice_orchestrator.api.openai.catalog import Catalog
from voice_orchestrator.text import WHISPER_LANGUAGES

PROGRAM = "voice-orchestrator"
ATTRIBUTION = Attribution(name="voice-orchestrator", url="https://pypi.org/project/voice-orchestrator/")
# A voice whose engine reads any language it is given (an XTTS voice) is listed for the two the server is
# built and tested for.
ANY_LANGUAGE = ["en", "ja"]


def describe(catalog: Catalog) -> Info:
    stt = next(model for model in catalog.models if model.stage == "stt")
    tts = next(model for model in catalog.models if model.stage == "tts")
    asr = AsrProgram(
        name=PROGRAM,
        description="Speech recognition on Ray Serve",
        attribution=ATTRIBUTION,
        installed=True,
        version=__version__,
        models=[
            AsrModel(
                name=stt.id,
                description=f"{stt.engine} {stt.root}",
                attribution=ATTRIBUTION,
                installed=True,
                version=None,
                languages=sorted(WHISPER_LANGUAGES),
            )
        ],
        # The transcript comes whole after audio-stop (recognition runs on the whole utterance).
        supports_transcript_streaming=False,
    )
    voices = [
        TtsVoice(
            name=voice.id,
            description=f"{tts.engine} {voice.id}",
            attribution=ATTRIBUTION,
            installed=True,
            version=None,
            languages=list(voice.languages) or ANY_LANGUAGE,
        )
        for voice in catalog.voices
    ]
    synthesis = TtsProgram(
        name=PROGRAM,
        description="Speech synthesis on Ray Serve, streamed sentence by sentence",
        attribution=ATTRIBUTION,
        installed=True,
        version=__version__,
        voices=voices,
        supports_synthesize_streaming=True,
    )
    return Info(asr=[asr], tts=[synthesis])
