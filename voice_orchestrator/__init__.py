"""Voice dialogue orchestrator: speech-to-text -> language model -> text-to-speech on Ray Serve.

The core package has no Ray import: `turn` runs every spoken turn (hear -> reply -> speak) through the
stage Protocols of `stages`, so it is tested in milliseconds with fakes; `api` is the HTTP layer, whose
`api.gate` lets every request in. Ray Serve wrappers live in the top-level `deployments/` package and the
graph in `graph.py`.
"""

__version__ = "0.1.0"
