"""The machine a benchmark ran on, for the first lines of its section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def describe(*extra: str) -> list[str]:
    """CPU (model, count, load average now), Python and OS, `extra` lines, qrloop's commit."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in output("lscpu").splitlines()
            if "Model name" in line
        ),
        platform.processor() or "?",
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    commit = output("git", "-C", str(HERE), "rev-parse", "--short", "HEAD").strip() or "?"
    return [
        f"- CPU: {model}, {os.cpu_count()} CPUs; load average at the end {load}",
        f"- Python: {platform.python_version()}, {platform.system()} {platform.release()}",
        *(f"- {line}" for line in extra),
        f"- qrloop: {commit}",
    ]


def output(*command: str) -> str:
    """What the command printed; nothing when it cannot run."""
    try:
        return subprocess.run(command, capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
