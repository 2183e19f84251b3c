"""The Wyoming door: Home Assistant's voice protocol (the `wyoming` package) on a TCP port of each ingress
replica, on the same gate, turn core, stages, metrics and logs as the HTTP routes.

    describe                                   -> info (our Whisper and its languages, our voices)
    transcribe, audio-start, audio-chunk*, audio-stop -> transcript
    synthesize                                 -> audio-start, audio-chunk*, audio-stop
    synthesize-start, synthesize-chunk*, synthesize-stop
                                               -> (audio-start, audio-chunk*, audio-stop) per sentence,
                                                  synthesize-stopped

Why a listener in the ingress replica rather than a deployment of its own or a bridge process: Serve's proxy
speaks only HTTP and gRPC, so a raw TCP protocol needs a socket of its own somewhere; the ingress replica is
where the gate (admission, limits), the turn core and the stage clients already live, so a Wyoming request is
admitted, timed out, counted and logged exactly like an HTTP one, and `serve deploy` brings it up and down
with the app. Replicas on one node share the port (SO_REUSEPORT); each node with an ingress replica listens.
"""
