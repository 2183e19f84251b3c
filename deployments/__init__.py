"""Thin Ray Serve wrappers: one deployment per stage, plus the FastAPI ingress."""
