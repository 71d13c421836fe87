"""The code passes the linter configured in pyproject.toml (ruff: pyflakes, pycodestyle, bugbear)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    # ruff is in requirements.txt (`bash setup.sh`); `-m` finds it where pip put it, PATH or not
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "kdlib", "tests", "tools", "bench"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
