"""The HTTP layer, split by job (no Ray import; the ingress deployment only builds these objects):

gate       where every request is let in: the API key, the body read under the upload limits before a
           dialogue slot is taken, admission, the one refusal logger
errors     the error body, built once for JSON responses and stream events alike; exception handlers
uploads    reading a request body: the multipart form under a byte limit and a read deadline
responses  how a turn's events become a WAV response or NDJSON lines
serving    the dialogue routes' logic: the gate, the turn (voice_orchestrator.turn), metrics and logs
docs       OpenAPI metadata of the dialogue routes; spec  writes the committed openapi.yaml
router     the routes themselves: short functions that hand over to the objects above
openai/    the OpenAI-compatible routes under /v1 (same gate, same turn core)
"""
