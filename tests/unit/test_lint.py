"""The code passes the linter configured in pyproject.toml (ruff: pyflakes, pycodestyle, bugbear)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or pytest.fail("ruff is not installed: `bash setup.sh` installs requirements.txt")
    done = subprocess.run([ruff, "check", "kdlib", "tests", "tools", "bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
