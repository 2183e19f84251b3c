"""How a turn's events leave the server: one WAV with the turn in its headers, or NDJSON lines."""

from __future__ import annotations

import asyncio
import base64

from pydantic import BaseModel

from voice_orchestrator.audio import encode_wav_pcm16
from voice_orchestrator.protocol import ProcessingMetadata, SpeechAudio, SpokenSentence, StreamAudioEvent
from voice_orchestrator.text import header_text


def dialogue_headers(meta: ProcessingMetadata, session_id: str | None) -> dict[str, str]:
    headers = {
        "X-Processing-Time-Total": f"{meta.total_ms:.1f}",
        "X-Processing-Time-STT": f"{meta.stt_ms:.1f}",
        "X-Processing-Time-LLM": f"{meta.llm_ms:.1f}",
        "X-Processing-Time-TTS": f"{meta.tts_ms:.1f}",
        "X-Input-Text": header_text(meta.input_text),
        "X-Input-Language": meta.input_language,
        "X-Input-Duration": f"{meta.input_duration_s:.3f}",
        "X-Output-Text": header_text(meta.output_text),
        "X-Output-Duration": f"{meta.output_duration_s:.3f}",
        "X-Output-Sample-Rate": str(meta.output_sample_rate),
    }
    if session_id:
        headers["X-Session-ID"] = session_id
    return headers


def stream_headers(text: str, language: str, session_id: str | None) -> dict[str, str]:
    headers = {
        "X-Input-Text": header_text(text),
        "X-Input-Language": language,
        "Cache-Control": "no-store",
        "X-Accel-Buffering": "no",  # proxies must pass each event on at once
    }
    if session_id:
        headers["X-Session-ID"] = session_id
    return headers


async def wav_bytes(speech: SpeechAudio) -> bytes:
    # Encoding is CPU work: off the event loop.
    return await asyncio.to_thread(encode_wav_pcm16, speech.samples, speech.sample_rate)


async def audio_event(sentence: SpokenSentence) -> StreamAudioEvent:
    speech = sentence.speech
    return StreamAudioEvent(
        index=sentence.index,
        text=sentence.text,
        sample_rate=speech.sample_rate,
        duration_s=round(speech.duration_s, 3),
        voice=speech.voice,
        audio=base64.b64encode(await wav_bytes(speech)).decode("ascii"),
    )


def ndjson_line(event: BaseModel) -> bytes:
    return (event.model_dump_json() + "\n").encode()
