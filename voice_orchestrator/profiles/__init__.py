"""The serve profiles the package carries: the embedded CPU profile and the GPU profile.

The wheel carries copies of both files, made when it is built (setup.py); a checkout or an editable install
reads the originals. `voice-orchestrator config [--gpu]` prints them (voice_orchestrator.cli). Their import
path (`graph:build_app`) resolves to the installed `graph` module: an installed wheel serves them anywhere.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

# profile -> (file name inside this package, path of the original in a checkout)
PROFILES = {
    "cpu": ("serve_config.yaml", "serve_config.yaml"),
    "gpu": ("serve_config.gpu.yaml", "cluster/serve_config.gpu.yaml"),
}
_CHECKOUT = Path(__file__).resolve().parents[2]


def profile_text(profile: str) -> str:
    """The YAML text of a profile ("cpu" or "gpu"), from the installed package or else from the checkout."""
    packaged_name, original = PROFILES[profile]
    packaged = resources.files(__name__) / packaged_name
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    checkout = _CHECKOUT / original
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"the {profile} profile is neither in the package ({packaged_name}) nor at {checkout}"
    )


def with_http_option(text: str, key: str, value: str) -> str:
    """`text` with `http_options.<key>` set to `value`; the rest of the file (comments too) untouched."""
    block = re.search(r"^http_options:\n((?:[ \t]+.*\n|\n)*)", text, flags=re.MULTILINE)
    if block is None:
        raise ValueError("the profile has no http_options block")
    # Only the value: the indentation, the spacing and any comment after it stay.
    body, count = re.subn(rf"^(\s+{key}:[ \t]*)[^\s#]+", rf"\g<1>{value}", block.group(1), flags=re.MULTILINE)
    if count != 1:
        raise ValueError(f"the profile's http_options has {count} {key!r} entries, expected one")
    return text[: block.start(1)] + body + text[block.end(1) :]


def rendered_profile(gpu: bool, host: str | None, port: int | None) -> str:
    text = profile_text("gpu" if gpu else "cpu")
    if host is not None:
        text = with_http_option(text, "host", host)
    if port is not None:
        text = with_http_option(text, "port", str(port))
    return text
