"""Run a Python script in a process whose peak-RSS figure (`resource.getrusage(...).ru_maxrss`)
starts from its own memory, not from the test runner's.

Why a grandchild: Linux carries the parent's high-water RSS into a forked child and keeps it
across `exec`, so a child of pytest (hundreds of MB, more while a test holds a big file in
memory) reports at least that peak, and any growth below it is invisible. A child that
starts fresh and spawns the measuring process hands on only its own few MB.
"""
from __future__ import annotations

import subprocess
import sys

_LAUNCH = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c'] + sys.argv[1:]).returncode)"


def run_fresh(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -c script args...` in a grandchild; stdout and stderr captured as text."""
    return subprocess.run([sys.executable, "-c", _LAUNCH, script, *args], capture_output=True, text=True,
                          timeout=timeout)
