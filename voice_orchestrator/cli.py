"""The `voice-orchestrator` command: the profiles an installed wheel carries, serving them, checking a node.

    voice-orchestrator config [--gpu] [--host H] [--port P]   # print a profile (for serve run / serve deploy)
    voice-orchestrator serve [--gpu] [--host H] [--port P]    # serve run that profile in the foreground
    voice-orchestrator check [--extras embedded,gpu]          # is this Python ready? (exit 1 if not)

In a container: `voice-orchestrator serve --host 0.0.0.0` (the profiles listen on 127.0.0.1 / 0.0.0.0).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from voice_orchestrator.install_check import check_install
from voice_orchestrator.profiles import rendered_profile


def _serve_executable() -> str:
    beside = Path(sys.executable).parent / "serve"  # this environment's Ray, not another one on PATH
    found = str(beside) if beside.is_file() else shutil.which("serve")
    if found is None:
        raise SystemExit("`serve` (ray[serve]) is not installed in this environment")
    return found


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voice-orchestrator", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("config", "print a serve profile (for serve run / serve deploy)"),
        ("serve", "serve run a profile in the foreground"),
    ):
        command = commands.add_parser(name, help=summary)
        command.add_argument(
            "--gpu", action="store_true", help="the GPU profile instead of the embedded CPU one"
        )
        command.add_argument("--host", help="http_options.host (0.0.0.0 in a container)")
        command.add_argument("--port", type=int, help="http_options.port")
    check = commands.add_parser("check", help="check that this Python can serve (exit status 1 if not)")
    check.add_argument("--extras", default="", help="comma-separated extras to check too: embedded, gpu, dev")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        facts, problems = check_install(extra for extra in args.extras.split(",") if extra)
        for fact in facts:
            print(f"ok       {fact}")
        for problem in problems:
            print(f"PROBLEM  {problem}")
        return 1 if problems else 0
    text = rendered_profile(args.gpu, args.host, args.port)
    if args.command == "config":
        sys.stdout.write(text)
        return 0
    fd, path = tempfile.mkstemp(prefix="voice-orchestrator-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    serve = _serve_executable()
    # exec: signals (docker stop, Ctrl-C) reach `serve run` itself, which shuts the application down.
    os.execv(serve, [serve, "run", path])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
