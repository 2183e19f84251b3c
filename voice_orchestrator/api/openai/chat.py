"""`POST /v1/chat/completions` (text): the conversation as the client wrote it, answered by the
LanguageModel stage's engine for the request's language (the model id's language, else the script of the last
user message: kana or kanji -> Japanese), whole or streamed (SSE chunks, then `data: [DONE]`). `usage` counts
tokens with the answering model's own tokenizer."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from voice_orchestrator.api.openai.chat_audio import AUDIO_TTL_S, ChatVoice, has_audio, reply_audio
from voice_orchestrator.api.openai.chat_protocol import (
    AssistantMessage,
    AudioOutput,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    ChatUsage,
    ChunkChoice,
)
from voice_orchestrator.api.openai.encoding import SpeechEncoder, closed_wav
from voice_orchestrator.api.openai.gateway import SSE_HEADERS, OpenAIGateway, Visit, sse_data
from voice_orchestrator.errors import OrchestratorError, invalid_request
from voice_orchestrator.protocol import (
    ChatMessage,
    ReplyRequest,
    SpokenSentence,
    StreamDoneEvent,
    TokenUsage,
)
from voice_orchestrator.stages import ChatModelStage
from voice_orchestrator.text import is_japanese
from voice_orchestrator.turn import SpokenTurn, TurnEvent


def _invalid(message: str, field: str) -> OrchestratorError:
    return invalid_request(message, field=field)


def reply_request(body: ChatCompletionRequest, language: str | None, max_tokens_limit: int) -> ReplyRequest:
    """The engine's request: the messages (developer = system), the language, the bounds."""
    messages: list[ChatMessage] = []
    for message in body.messages:
        try:
            text = message.text()
        except ValueError as error:
            raise _invalid(f"{error}; send text content.", "messages") from None
        role = "system" if message.role == "developer" else message.role
        messages.append(ChatMessage(role=role, content=text))
    users = [message.content for message in messages if message.role == "user"]
    if not users:
        raise _invalid("messages has no user message.", "messages")
    asked = body.max_completion_tokens or body.max_tokens or max_tokens_limit
    if asked > max_tokens_limit:
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        raise _invalid(f"{field} is {asked}; this server allows at most {max_tokens_limit}.", field)
    return ReplyRequest(
        text=users[-1],
        language=language or ("ja" if is_japanese(users[-1]) else "en"),
        messages=messages,
        max_tokens=asked,
        temperature=body.temperature,
        stop=body.stops,
    )


def finish_reason(usage: TokenUsage, max_tokens: int) -> str:
    return "length" if usage.completion_tokens >= max_tokens else "stop"


class ChatService:
    def __init__(self, gateway: OpenAIGateway, llm: ChatModelStage, voice: ChatVoice) -> None:
        self._gateway = gateway
        self._llm = llm
        self._voice = voice

    async def complete(self, request: Request, visit: Visit) -> Response:
        body = await self._gateway.read_json(request, ChatCompletionRequest)
        catalog = await self._gateway.catalog()
        try:
            model = catalog.resolve(body.model, "llm")
        except OrchestratorError as unknown:
            try:  # the spoken dialogue's ids (gpt-4o-audio-preview, ...) chat too
                model = catalog.resolve(body.model, "dialogue")
            except OrchestratorError:
                raise unknown from None
        if body.speaks:
            if body.audio is None:
                raise _invalid("modalities has 'audio': say which voice and format in audio.", "audio")
            if body.stream and body.audio.format != "pcm16":
                raise _invalid("A streamed spoken reply is pcm16 (as OpenAI streams it).", "audio")
            catalog.check_voice(body.audio.voice)
        visit.admit()
        heard = None
        if has_audio(body):
            body, heard = await self._voice.hear(body)
        language = model.languages[0] if model.languages else heard
        asked = reply_request(body, language, self._gateway.settings.max_chat_tokens)
        reply = _Reply(f"chatcmpl-{uuid.uuid4().hex}", int(time.time()), body.model, asked)
        usage_wanted = body.stream_options is not None and body.stream_options.include_usage
        if body.speaks and body.audio is not None:
            turn = self._gateway.core.reply(
                asked, request_id=visit.request_id, voice=await self._voice.voice_choice(body.audio)
            )
            if body.stream:
                events = aiter(turn)
                # The first sentence spoken before the status: a broken model or voice is a proper error.
                first = await anext(events)
                chunks = self._spoken_chunks(reply, turn, first, events, usage_wanted)
                return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
            return await self._spoken_whole(reply, turn, body.audio)
        core = self._gateway.core
        deadline = asyncio.get_running_loop().time() + self._gateway.settings.llm_timeout_seconds
        if body.stream:
            deltas = self._llm.stream(asked)
            # The first text before the status: a busy or broken model is still a proper error response.
            first_text = await core.call("llm", anext(deltas, ""), deadline=deadline)
            chunks = self._text_chunks(reply, first_text, deltas, deadline, usage_wanted)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
        text = await core.call("llm", self._whole(asked), deadline=deadline)
        usage = await self._usage(asked, text)
        return _completion(reply, AssistantMessage(content=text), usage)

    async def _whole(self, asked: ReplyRequest) -> str:
        return "".join([delta async for delta in self._llm.stream(asked)])

    async def _usage(self, asked: ReplyRequest, completion: str) -> TokenUsage:
        return await self._gateway.core.call("llm", self._llm.usage(asked, completion))

    async def _text_chunks(
        self,
        reply: _Reply,
        first: str,
        deltas: AsyncIterator[str],
        deadline: float,
        usage_wanted: bool,
    ) -> AsyncIterator[bytes]:
        """The model's text deltas as content chunks, the whole reply within the LLM timeout."""
        parts = [first]
        try:
            yield reply.chunk(ChatDelta(role="assistant", content=""))
            delta: str | None = first
            while delta is not None:
                if delta:
                    yield reply.chunk(ChatDelta(content=delta))
                delta = await self._gateway.core.call("llm", anext(deltas, None), deadline=deadline)
                if delta is not None:
                    parts.append(delta)
        finally:  # the client left or the model failed: stop generating
            close = getattr(deltas, "aclose", None)
            if close is not None:
                await close()
        async for chunk in self._ending(reply, "".join(parts), usage_wanted):
            yield chunk

    async def _spoken_chunks(
        self,
        reply: _Reply,
        turn: SpokenTurn,
        first: TurnEvent,
        events: AsyncIterator[TurnEvent],
        usage_wanted: bool,
    ) -> AsyncIterator[bytes]:
        """Each spoken sentence as a `delta.audio` chunk (its pcm16 and its transcript) as soon as the turn
        has synthesised it."""
        audio_id = f"audio_{uuid.uuid4().hex}"
        encoder = SpeechEncoder("pcm")
        try:
            yield reply.chunk(ChatDelta(role="assistant", content=None))
            event: TurnEvent | None = first
            while event is not None:
                if isinstance(event, SpokenSentence):
                    speech = event.speech
                    pcm = await asyncio.to_thread(encoder.encode, speech.samples, speech.sample_rate)
                    audio = {
                        "id": audio_id,
                        "data": base64.b64encode(pcm).decode("ascii"),
                        "transcript": event.text,
                        "expires_at": reply.created + AUDIO_TTL_S,
                    }
                    yield reply.chunk(ChatDelta(audio=audio))
                event = await anext(events, None)
        finally:
            await events.aclose()  # type: ignore[attr-defined]
        async for chunk in self._ending(reply, turn.model_text, usage_wanted):
            yield chunk

    async def _spoken_whole(self, reply: _Reply, turn: SpokenTurn, wanted: AudioOutput) -> Response:
        """The whole spoken reply in `message.audio`, in the asked format."""
        encoder = SpeechEncoder("pcm" if wanted.format == "pcm16" else wanted.format)
        data = bytearray()
        transcript = ""
        async for event in turn:
            if isinstance(event, SpokenSentence):
                speech = event.speech
                data += await asyncio.to_thread(encoder.encode, speech.samples, speech.sample_rate)
            elif isinstance(event, StreamDoneEvent):
                transcript = event.metadata.output_text
        data += await asyncio.to_thread(encoder.finish)
        whole = closed_wav(bytes(data)) if wanted.format == "wav" else bytes(data)
        usage = await self._usage(reply.asked, turn.model_text)
        message = AssistantMessage(content=None, audio=reply_audio(whole, wanted, transcript))
        return _completion(reply, message, usage)

    async def _ending(self, reply: _Reply, completion: str, usage_wanted: bool) -> AsyncIterator[bytes]:
        """The finish chunk, the usage chunk when asked for, then `[DONE]`."""
        usage = await self._usage(reply.asked, completion)
        yield reply.chunk(ChatDelta(), finish_reason(usage, reply.asked.max_tokens or 0))
        if usage_wanted:
            yield reply.chunk(ChatDelta(), usage=ChatUsage(**usage.model_dump()))
        yield sse_data("[DONE]")


@dataclass(frozen=True)
class _Reply:
    """One completion's identity (id, time, the model id the client named) and the engine's request."""

    completion_id: str
    created: int
    model: str
    asked: ReplyRequest

    def chunk(self, delta: ChatDelta, reason: Any = None, usage: ChatUsage | None = None) -> bytes:
        choices = [] if usage is not None else [ChunkChoice(delta=delta, finish_reason=reason)]
        body = ChatCompletionChunk(
            id=self.completion_id, created=self.created, model=self.model, choices=choices, usage=usage
        )
        payload = body.model_dump(mode="json")
        if usage is None:
            payload.pop("usage")
        for choice in payload["choices"]:
            if choice["delta"].get("audio") is None:
                choice["delta"].pop("audio", None)
        return sse_data(payload)


def _completion(reply: _Reply, message: AssistantMessage, usage: TokenUsage) -> JSONResponse:
    reason = finish_reason(usage, reply.asked.max_tokens or 0)
    answer = ChatCompletion(
        id=reply.completion_id,
        created=reply.created,
        model=reply.model,
        choices=[ChatChoice(message=message, finish_reason="length" if reason == "length" else "stop")],
        usage=ChatUsage(**usage.model_dump()),
    )
    return JSONResponse(answer.model_dump(mode="json"))
