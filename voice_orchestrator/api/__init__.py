"""The HTTP layer, split by job (no Ray import; the ingress deployment only builds these objects):

errors     the error body, built once for JSON responses and stream events alike; exception handlers;
           the OpenAPI error responses, from the one error table
uploads    reading a dialogue request: the multipart body under a byte limit and a read deadline
responses  how a turn's events become a WAV response or NDJSON lines
serving    the dialogue routes' logic: admission, the pipeline, metrics and logs
status     GET /status from Serve's view of the stages and the ingress's own evidence of their calls
docs       OpenAPI metadata of the routes
router     the routes themselves: short functions that hand over to the objects above
"""
