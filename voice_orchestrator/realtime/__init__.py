"""The realtime socket (OpenAI Realtime protocol): turn-taking over a WebSocket."""
