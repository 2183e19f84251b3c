"""Build hook; everything else about the package is in pyproject.toml.

The wheel carries both serve profiles inside the package (voice_orchestrator/profiles/), copied from where
they live in the repository, so an installed wheel can print and serve them (`voice-orchestrator config
[--gpu]`) with no checkout. An editable install reads the originals instead
(voice_orchestrator.profiles.profile_text).
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# name inside the package -> the original (MANIFEST.in puts both into the sdist)
PROFILES = {
    "serve_config.yaml": "serve_config.yaml",
    "serve_config.gpu.yaml": "cluster/serve_config.gpu.yaml",
}


class BuildPyWithProfiles(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        target = Path(self.build_lib) / "voice_orchestrator" / "profiles"
        target.mkdir(parents=True, exist_ok=True)
        for name, original in PROFILES.items():
            self.copy_file(str(ROOT / original), str(target / name))


setup(cmdclass={"build_py": BuildPyWithProfiles})
