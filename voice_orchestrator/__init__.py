"""Voice dialogue orchestrator: speech-to-text -> language model -> text-to-speech on Ray Serve.

The core package has no Ray import: `pipeline` drives the three stages through the small Protocols in
`stages`, so it can be tested in milliseconds with fakes. Ray Serve wrappers live in the top-level
`deployments/` package and the graph in `graph.py`.
"""

__version__ = "0.1.0"
