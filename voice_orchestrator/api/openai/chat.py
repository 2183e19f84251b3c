"""`POST /v1/chat/completions` (text): the conversation as the client wrote it, answered by the
LanguageModel stage's engine for the request's language (the model id's language, else the script of the last
user message: kana or kanji -> Japanese), whole or streamed (SSE chunks, then `data: [DONE]`). `usage` counts
tokens with the answering model's own tokenizer."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from voice_orchestrator.api.openai.chat_audio import AUDIO_TTL_S, ChatVoice, has_audio
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
from voice_orchestrator.api.openai.gateway import SSE_HEADERS, OpenAIGateway, sse_data
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import ChatMessage, ReplyRequest, TokenUsage
from voice_orchestrator.sentences import SentenceSplitter
from voice_orchestrator.text import clean_for_speech, is_japanese


class ChatModelStage(Protocol):
    def stream(self, request: ReplyRequest) -> AsyncIterator[str]: ...

    async def usage(self, request: ReplyRequest, completion: str) -> TokenUsage: ...


def _invalid(message: str, field: str) -> OrchestratorError:
    return OrchestratorError(OrchestratorErrorCode.INVALID_REQUEST, message, details={"field": field})


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

    async def complete(self, request: Request, request_id: str) -> Response:
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
        heard = None
        if has_audio(body):
            body, heard = await self._voice.hear(body)
        language = model.languages[0] if model.languages else heard
        asked = reply_request(body, language, self._gateway.settings.max_chat_tokens)
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if body.stream:
            usage_wanted = body.stream_options is not None and body.stream_options.include_usage
            deltas = self._llm.stream(asked)
            # The first text before the status: a busy or broken model is still a proper error response.
            first = await self._gateway.call_stage("llm", anext(deltas, ""))
            spoken = body.audio if body.speaks else None
            meta = (completion_id, created, body.model)
            chunks = self._chunks(asked, first, deltas, meta, usage_wanted, spoken)
            return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
        text = await self._gateway.call_stage("llm", self._whole(asked))
        usage = await self._gateway.call_stage("llm", self._llm.usage(asked, text))
        message = AssistantMessage(content=text)
        if body.speaks and body.audio is not None:
            said = await self._voice.speak(text.strip(), body.audio, asked.language)
            message = AssistantMessage(content=None, audio=said)
        answer = ChatCompletion(
            id=completion_id,
            created=created,
            model=body.model,
            choices=[
                ChatChoice(
                    message=message,
                    finish_reason="length"
                    if finish_reason(usage, asked.max_tokens or 0) == "length"
                    else "stop",
                )
            ],
            usage=ChatUsage(**usage.model_dump()),
        )
        return JSONResponse(answer.model_dump(mode="json"))

    async def _whole(self, asked: ReplyRequest) -> str:
        return "".join([delta async for delta in self._llm.stream(asked)])

    async def _chunks(
        self,
        asked: ReplyRequest,
        first: str,
        deltas: AsyncIterator[str],
        meta: tuple[str, int, str],
        usage_wanted: bool,
        spoken: AudioOutput | None = None,
    ) -> AsyncIterator[bytes]:
        """Text deltas as content chunks; with `spoken`, each sentence instead as a `delta.audio` chunk
        (its pcm16 and its transcript) as soon as it is synthesised."""
        completion_id, created, model = meta
        audio_id = f"audio_{uuid.uuid4().hex}"
        splitter = SentenceSplitter(
            self._gateway.settings.stream_soft_split_chars, self._gateway.settings.stream_first_chunk_chars
        )

        def chunk(delta: ChatDelta, reason: Any = None, usage: ChatUsage | None = None) -> bytes:
            choices = [] if usage is not None else [ChunkChoice(delta=delta, finish_reason=reason)]
            body = ChatCompletionChunk(
                id=completion_id, created=created, model=model, choices=choices, usage=usage
            )
            payload = body.model_dump(mode="json")
            if usage is None:
                payload.pop("usage")
            for choice in payload["choices"]:
                if choice["delta"].get("audio") is None:
                    choice["delta"].pop("audio", None)
            return sse_data(payload)

        async def said(texts: list[str]) -> AsyncIterator[bytes]:
            assert spoken is not None
            for sentence in texts:
                if cleaned := clean_for_speech(sentence):
                    pcm = await self._voice.sentence_pcm(cleaned, spoken, asked.language)
                    audio = {
                        "id": audio_id,
                        "data": base64.b64encode(pcm).decode("ascii"),
                        "transcript": sentence,
                        "expires_at": created + AUDIO_TTL_S,
                    }
                    yield chunk(ChatDelta(audio=audio))

        parts = [first]
        try:
            yield chunk(ChatDelta(role="assistant", content=None if spoken else ""))
            delta: str | None = first
            while delta is not None:
                if delta and spoken is None:
                    yield chunk(ChatDelta(content=delta))
                elif delta:
                    async for spoken_chunk in said(splitter.feed(delta)):
                        yield spoken_chunk
                delta = await self._gateway.call_stage("llm", anext(deltas, None))
                if delta is not None:
                    parts.append(delta)
            if spoken is not None:
                async for spoken_chunk in said(splitter.flush()):
                    yield spoken_chunk
        finally:  # the client left or the model failed: stop generating
            close = getattr(deltas, "aclose", None)
            if close is not None:
                await close()
        usage = await self._gateway.call_stage("llm", self._llm.usage(asked, "".join(parts)))
        yield chunk(ChatDelta(), finish_reason(usage, asked.max_tokens or 0))
        if usage_wanted:
            yield chunk(ChatDelta(), usage=ChatUsage(**usage.model_dump()))
        yield sse_data("[DONE]")
