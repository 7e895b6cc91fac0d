"""The built wheel, installed for real (not editable) in a fresh venv, serves and redeems."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import Stores, redeem, serving

ROOT = Path(__file__).parents[2]
_NOT_SOURCE = ("__pycache__", "*.egg-info")


def _run(*args: str | Path, cwd: Path) -> str:
    result = subprocess.run(
        [str(arg) for arg in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


@pytest.mark.wheel
def test_the_wheel_installed_in_a_fresh_venv_serves_and_redeems(
    stores: Stores, tmp_path: Path
) -> None:
    """`pip wheel` builds qrloop; `pip install` of that wheel into a new venv (dependencies
    from the index, qrloop from the wheel alone) imports qrloop.app from the venv, not from this
    checkout; its `qrloop serve` starts, and a merchant made by its `qrloop` command orders a
    code that a till redeems once. A wheel without its Lua scripts, SQL or templates fails."""
    # Built from a copy: setuptools' build/ folder in the checkout would carry stale files.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path, source, cwd=source
    )
    (wheel,) = tmp_path.glob("qrloop-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    _run(python, "-m", "pip", "install", "-q", wheel, cwd=tmp_path)
    imported = _run(python, "-c", "import qrloop.app; print(qrloop.app.__file__)", cwd=tmp_path)
    assert Path(imported.strip()).is_relative_to(venv)

    with serving(stores, tmp_path / "serve", python=str(python)) as stack:
        merchant = stack.new_merchant()
        token = merchant.terminal_token(merchant.created("/v1/stores", {"name": "S"})["id"])
        (code,) = merchant.codes(merchant.campaign(), 1)
        assert redeem(stack, token, code).status_code == 200
        assert redeem(stack, token, code).status_code == 409
