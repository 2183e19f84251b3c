"""Thin Ray Serve wrappers around the Ray-free core (voice_orchestrator):

stt, llm, tts      one deployment per model stage, each choosing its engine from the settings, with
                   reconfigure() for its live settings and check_health() from real engine probes
conversations      the shared session memory
ingress            the FastAPI ingress: builds the gate, the turn core and the routes around the stage clients
stage_client       a stage's Serve handle as a stage Protocol (cancellation, 429/503, /status evidence)
_replica, _metrics what every replica shares: JSON logs, accounting, the metric table as ray.serve.metrics
"""
