"""The README's walkthrough, pasted into bash as a newcomer would, gives the answers it shows;
the README documents every setting."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qrloop.settings import ENVIRONMENT
from support import Stack

README = Path(__file__).parents[2] / "README.md"


def walkthrough() -> str:
    """The first ```sh block under '## Walkthrough'."""
    section = README.read_text().split("## Walkthrough", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def sample_output() -> str:
    """The ```text block after "What you will see"."""
    section = README.read_text().split("What you will see", 1)[1]
    return section.split("```text\n", 1)[1].split("```", 1)[0]


def _json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Each line of `text` that is a JSON object, parsed, in order."""
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(parsed, dict):
                yield parsed


@pytest.fixture(scope="module")
def output(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """What the walkthrough prints, standard output and error interleaved as on a terminal."""
    if shutil.which("curl") is None:
        pytest.skip("the walkthrough uses curl")
    folder = tmp_path_factory.mktemp("walkthrough")
    (folder / ".venv").symlink_to(Path(sys.prefix))
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough()],
        cwd=folder,
        env={**stack.env, "QRLOOP_URL": stack.base_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout
    assert not (folder / "codes.csv").exists()
    assert not (folder / "jar").exists()
    return result.stdout


def test_readme_walkthrough_redeems_once_then_refuses(output: str) -> None:
    """Pasted as written, the walkthrough watches its order get signed, claims a code with the
    one-time code `qrloop outbox tail` shows (development sender) and sees that code on the
    claimed page, redeems another code, is refused the replay, and counts one redemption;
    then a second merchant accepts the issuer's proposal and its till redeems a third code,
    the answer naming the issuer; last, the issuer lists the campaign's two redemptions and
    looks up the code it redeemed."""
    lines = output.splitlines()  # each redraw of the progress bar is a line here
    header = lines.index("code,typed,claim_url")
    bar, took = lines[header - 2 : header]
    assert "100%" in bar
    assert bar.endswith("done")
    assert re.fullmatch(r"3 codes in [\d.]+ m?s \([\d,]+ codes/s\)", took), took
    typed_column = [line.split(",")[1] for line in lines[header + 1 : header + 4]]
    claimed = [line.removeprefix("claimed: ") for line in lines if line.startswith("claimed: ")]
    assert claimed == [typed_column[1]]  # the second code's claim link shows the second code
    answers = list(_json_objects(output))
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
    assert "The API key is shown only this once" in output
    # It ends with the campaign's redemptions, newest first, and the first code looked up.
    listed, looked_up = answers[-2:]
    assert [item["redemption_id"] for item in listed["items"]] == [
        foreign["redemption_id"],
        redeemed["redemption_id"],
    ]
    assert listed["items"][0]["accepting_merchant_id"] != redeemed["issuer_merchant_id"]
    assert (looked_up["serial"], looked_up["state"]) == (redeemed["serial"], "redeemed")
    assert [use["redemption_id"] for use in looked_up["uses"]] == [redeemed["redemption_id"]]


def test_the_readme_walkthrough_ends_with_the_owners_link_to_the_dashboard(
    output: str, stack: Stack
) -> None:
    """Its last line is the first merchant's one-time link to set the owner's dashboard
    password: a page that asks for the password of the owner named at `merchants create`."""
    last = output.splitlines()[-1]
    assert last.startswith("dashboard: "), last
    link = last.removeprefix("dashboard: ")
    assert link.startswith(stack.base_url + "/dashboard/set-password/")
    page = httpx.get(link, timeout=30)
    assert page.status_code == 200
    assert re.search(r"owner-\d+@cone\.example\.com", page.text)


# Sample values that legitimately differ from run to run: ids, keys, codes, times (all hold a
# digit) and elided secrets. Other strings, booleans and nulls must be what the API says.
def _fixed(value: object) -> bool:
    if isinstance(value, str):
        return not re.search(r"[0-9…]", value)
    return value is None or isinstance(value, bool)


def test_the_readme_shows_the_answers_the_walkthrough_gets(output: str) -> None:
    """Each JSON line of "What you will see" is, in order, an answer the walkthrough really
    prints: the same fields (none missing, none extra) and the same statuses, reasons, names
    and flags. A step added to the walkthrough without its sample, a field added to an answer,
    or a state that changed (an order answers "queued", not "done") fails here."""
    real = list(_json_objects(output))
    position = 0
    for sample in _json_objects(sample_output()):
        shape = sorted(sample)
        found = next(
            (i for i in range(position, len(real)) if sorted(real[i]) == shape),
            None,
        )
        assert found is not None, (
            f"no answer after #{position} has the fields of the README's {sample};"
            f" the walkthrough printed: {real[position:]}"
        )
        fixed = {key: value for key, value in sample.items() if _fixed(value)}
        assert {key: real[found][key] for key in fixed} == fixed, real[found]
        position = found + 1


def test_the_readme_shows_the_help_qrloop_prints() -> None:
    """The README's `qrloop --help` is what the command prints, in an 80-column terminal."""
    section = README.read_text().split("## Commands", 1)[1]
    shown = section.split("```text\n$ qrloop --help\n", 1)[1].split("```", 1)[0]
    printed = subprocess.run(
        [Path(sys.executable).parent / "qrloop", "--help"],
        env={**os.environ, "COLUMNS": "80"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert shown == printed


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    """Each environment variable settings.py reads has a row in the README's configuration
    table."""
    table = README.read_text().split("## Configuration", 1)[1].split("\n\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`([A-Z_]+)`", row.split("|")[1])}
    assert set(ENVIRONMENT) - documented == set()
