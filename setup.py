"""Everything is in pyproject.toml except one build step: a wheel carries the shipped suites/ and data/ (about
7 MB) as package data under harness/shipped/, so `harness list` and `harness run suites/quick.yaml` work from a
normal install in any directory (harness.input.suite.shipped_folder finds them). Editable installs read the checkout's."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = ("suites", "data")


class BuildPyWithShippedFiles(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in SHIPPED:
            target = Path(self.build_lib) / "harness" / "shipped" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / name, target)


setup(cmdclass={"build_py": BuildPyWithShippedFiles})
