"""The README's walkthrough, pasted into bash as a newcomer would, gives the answers it shows."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import Stack

README = Path(__file__).parents[2] / "README.md"


def walkthrough() -> str:
    """The first ```sh block under '## Walkthrough'."""
    section = README.read_text().split("## Walkthrough", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walkthrough uses curl")
def test_readme_walkthrough_redeems_once_then_refuses(stack: Stack, tmp_path: Path) -> None:
    """Pasted as written, the walkthrough watches its order get signed, claims a code with the
    one-time code `qrloop outbox tail` shows (development sender) and sees that code on the
    claimed page, redeems another code, is refused the replay, and counts one redemption;
    then a second merchant accepts the issuer's proposal and its till redeems a third code,
    the answer naming the issuer."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=tmp_path,
        env={**stack.env, "QRLOOP_URL": stack.base_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()  # each redraw of the progress bar is a line here
    header = lines.index("code,typed,claim_url")
    assert "100%" in lines[header - 1]
    assert lines[header - 1].endswith("done")
    typed_column = [line.split(",")[1] for line in lines[header + 1 : header + 4]]
    claimed = [line.removeprefix("claimed: ") for line in lines if line.startswith("claimed: ")]
    assert claimed == [typed_column[1]]  # the second code's claim link shows the second code
    answers = [json.loads(line) for line in lines if line.startswith("{")]
    redeemed, foreign = (a for a in answers if a.get("status") == "redeemed")
    [refused] = (a for a in answers if a.get("reason") == "already_redeemed")
    [stats] = (a for a in answers if "issued" in a)
    assert refused["status"] == 409
    assert stats["issued"] == 3
    assert stats["redeemed"] == 1
    assert stats["claimed"] == 1
    assert "active" in lines
    assert foreign["campaign_id"] == redeemed["campaign_id"]
    assert foreign["serial"] != redeemed["serial"]
    assert foreign["issuer_name"] == redeemed["issuer_name"] == "Cone & Co"
    assert "The API key is shown only this once" in result.stderr
    assert not (tmp_path / "codes.csv").exists()
    assert not (tmp_path / "jar").exists()
