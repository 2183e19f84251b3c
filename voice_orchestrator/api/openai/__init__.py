"""The OpenAI-compatible routes under `/v1`, on the same stages, API key, admission, logs and metrics as the
dialogue routes (the layout of vLLM's `entrypoints/openai`):

protocol   pydantic models of OpenAI's request and response shapes (what we accept and answer)
catalog    the loaded models as OpenAI model ids, their well-known aliases (whisper-1, tts-1, ...), the voices
gateway    what every /v1 request goes through: API key, admission, a log line and metrics, errors in
           OpenAI's shape
speech     POST /v1/audio/speech and GET /v1/audio/voices
router     the routes: short functions that hand over to the objects above

Errors use OpenAI's shape `{"error": {"message", "type", "param", "code"}}` with `code` = our error code and
the status of the one error table (`voice_orchestrator.errors`): the official SDKs raise typed exceptions.
"""
