"""One turn of a Pipecat voice bot whose three services are this app's /v1 routes, built as Pipecat users do:

    audio in -> OpenAISTTService -> user context aggregator (Silero VAD, smart-turn) -> OpenAILLMService
             -> OpenAITTSService -> assistant context aggregator

The user's audio is a spoken question fed as 20 ms `InputAudioRawFrame`s in real time, as a transport would:
the aggregator's VAD finds where the speech starts and stops and tells the segmented STT (its
`VADUserStarted/StoppedSpeakingFrame`s go upstream), the STT posts the segment to /v1/audio/transcriptions,
the turn ends, the LLM streams /v1/chat/completions and the TTS reads each sentence from /v1/audio/speech
(`pcm`, 24 kHz). Taps between the services keep what passes; nothing is stubbed.

Imported only where pipecat-ai is installed (.venv-pipecat: scripts/venv_pipecat.sh).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.frames.frames import (
    EndFrame,
    ErrorFrame,
    Frame,
    InputAudioRawFrame,
    LLMFullResponseEndFrame,
    LLMTextFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.aggregators.llm_context import LLMContext
from pipecat.processors.aggregators.llm_response_universal import (
    LLMContextAggregatorPair,
    LLMUserAggregatorParams,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.llm import OpenAILLMService
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.transcriptions.language import Language
from pipecat.workers.runner import WorkerRunner

from voice_orchestrator.audio import AudioLimits, decode_audio

IN_RATE = 16_000  # what Silero VAD reads; Pipecat's default input rate
OUT_RATE = 24_000  # OpenAI's speech rate, which OpenAITTSService asks for
FRAME_SAMPLES = IN_RATE // 50  # 20 ms, a transport's usual frame
LEADING_SILENCE_S = 0.5
TRAILING_SILENCE_S = 1.5  # VAD stop (0.2 s) and smart-turn's look at the end of the turn fit well inside


class Tap(FrameProcessor):
    """Passes every frame on; keeps those of the `keep` types and sets `done` on one of the `until` types."""

    def __init__(
        self, keep: tuple[type[Frame], ...], done: asyncio.Event, until: tuple[type[Frame], ...] = ()
    ) -> None:
        super().__init__()
        self.keep = keep
        self.until = until
        self.done = done
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, self.keep):
            self.frames.append(frame)
        if isinstance(frame, self.until):
            self.done.set()
        await self.push_frame(frame, direction)


@dataclass(frozen=True)
class Turn:
    """What one turn of the bot produced."""

    transcripts: list[str]  # TranscriptionFrames out of the STT
    reply: str  # the LLM's streamed text
    audio: bytes  # the TTS's PCM16 mono
    audio_rates: set[int]
    errors: list[str]  # ErrorFrames that reached the pipeline's head
    context: list[tuple[str, str]]  # the conversation the aggregators kept: (role, content)
    finished: bool  # the turn's LLMFullResponseEndFrame came out of the TTS (after its audio)


def _role_and_text(message: object) -> tuple[str, str]:
    if isinstance(message, dict):
        return str(message.get("role")), str(message.get("content"))
    return type(message).__name__, str(message)


def pcm16_frames(wav: bytes) -> list[bytes]:
    """The question as 16 kHz mono PCM16 in 20 ms frames, between stretches of silence."""
    samples = decode_audio(wav, AudioLimits(min_seconds=0.1, max_seconds=60.0)).samples
    silence = np.zeros(int(IN_RATE * LEADING_SILENCE_S), dtype=np.float32)
    tail = np.zeros(int(IN_RATE * TRAILING_SILENCE_S), dtype=np.float32)
    audio = np.concatenate([silence, samples, tail])
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    step = FRAME_SAMPLES * 2
    return [pcm[start : start + step] for start in range(0, len(pcm) - step + 1, step)]


async def one_turn(v1_url: str, wav: bytes, language: str, timeout_s: float) -> Turn:
    """Speaks `wav` to the bot and returns what came back once the reply's audio is out (or `timeout_s`
    passed, or an error reached the pipeline's head)."""
    done = asyncio.Event()
    errors = Tap((ErrorFrame,), done, until=(ErrorFrame,))
    heard = Tap((TranscriptionFrame,), done)
    said = Tap((LLMTextFrame,), done)
    spoken = Tap((TTSAudioRawFrame, LLMFullResponseEndFrame), done, until=(LLMFullResponseEndFrame,))

    # The services as a Pipecat user configures them for an OpenAI-compatible server: base_url and a key;
    # every model is Pipecat's default (STT "gpt-transcribe", an alias of the app's Whisper).
    stt = OpenAISTTService(
        api_key="unused", base_url=v1_url, settings=OpenAISTTService.Settings(language=Language(language))
    )
    llm = OpenAILLMService(api_key="unused", base_url=v1_url)  # default model: gpt-4.1
    tts = OpenAITTSService(api_key="unused", base_url=v1_url)  # defaults: gpt-4o-mini-tts, alloy, pcm
    context = LLMContext()
    aggregators = LLMContextAggregatorPair(
        context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer())
    )
    pipeline = Pipeline(
        [errors, stt, heard, aggregators.user(), llm, said, tts, spoken, aggregators.assistant()]
    )
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(audio_in_sample_rate=IN_RATE, audio_out_sample_rate=OUT_RATE),
        enable_rtvi=False,
    )
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    running = asyncio.create_task(runner.run())

    async def speak_then_wait() -> None:
        for chunk in pcm16_frames(wav):
            await worker.queue_frame(InputAudioRawFrame(audio=chunk, sample_rate=IN_RATE, num_channels=1))
            await asyncio.sleep(FRAME_SAMPLES / IN_RATE)  # real time, as a microphone delivers it
        await done.wait()

    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(speak_then_wait(), timeout_s)
        finished = any(isinstance(frame, LLMFullResponseEndFrame) for frame in spoken.frames)
        await worker.queue_frame(EndFrame())  # ends the pipeline behind whatever is still queued
        await asyncio.wait_for(asyncio.shield(running), 60)
    finally:
        if not running.done():
            await worker.cancel(reason="the test is over")
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(running, 30)
        if not running.done():
            running.cancel()

    audio = [frame for frame in spoken.frames if isinstance(frame, TTSAudioRawFrame)]
    return Turn(
        transcripts=[frame.text for frame in heard.frames if isinstance(frame, TranscriptionFrame)],
        reply="".join(frame.text for frame in said.frames if isinstance(frame, LLMTextFrame)),
        audio=b"".join(frame.audio for frame in audio),
        audio_rates={frame.sample_rate for frame in audio},
        errors=[str(frame.error) for frame in errors.frames if isinstance(frame, ErrorFrame)],
        context=[_role_and_text(message) for message in context.get_messages()],
        finished=finished,
    )
