"""The benchmark scripts stay runnable: each one imports and answers `--help`.

They are run by hand, rarely, so a refactor that breaks an import between them would
otherwise be found only by the next person who measures something.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ALL = sorted(BENCHMARKS.glob("*.py"))
SCRIPTS = [path.name for path in ALL if 'if __name__ == "__main__"' in path.read_text()]
MODULES = [path.stem for path in ALL if path.name not in SCRIPTS]


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    """Python with `args`, in the benchmarks folder (the scripts import each other from it)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=BENCHMARKS,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_there_are_scripts_to_check() -> None:
    """The glob finds the benchmark scripts (a moved folder would otherwise pass vacuously)."""
    assert {"redeem.py", "settlement.py", "capacity.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_script_answers_help(script: str) -> None:
    """`python benchmarks/SCRIPT --help` imports everything the script uses and exits 0."""
    answer = _python(script, "--help")
    assert answer.returncode == 0, answer.stderr
    assert "usage:" in answer.stdout


@pytest.mark.parametrize("module", MODULES)
def test_a_benchmark_module_imports(module: str) -> None:
    """The helpers the scripts share (some imported only behind a flag) import on their own."""
    answer = _python("-c", f"import {module}")
    assert answer.returncode == 0, answer.stderr
