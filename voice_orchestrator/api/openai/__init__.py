"""The OpenAI-compatible routes under `/v1`, on the same gate, turn core, logs and metrics as the dialogue
routes (the layout of vLLM's `entrypoints/openai`):

protocol       pydantic models of OpenAI's audio request and response shapes (what we accept and answer)
chat_protocol  the same for chat completions
catalog        the loaded models as OpenAI model ids, their aliases (whisper-1, tts-1, ...), the voices
gateway        what every /v1 request goes through: the gate, a log line and metrics, errors in OpenAI's shape
speech         POST /v1/audio/speech (the turn core's `say`); encoding: the audio formats
transcription  POST /v1/audio/transcriptions and /translations
chat           POST /v1/chat/completions, text or spoken (a turn); chat_audio: audio parts in, voices out
docs           OpenAPI metadata of the /v1 routes
router         the routes: short functions that hand over to the objects above

Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with `code` = our error code and
the status of the one error table (`voice_orchestrator.errors`): the official SDKs raise typed exceptions.
"""
