"""The signer's export files are private whatever the umask and the parents' modes."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrloop.issuance.signer import _resumed, private_directory


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """umask 000 for the test: whatever is not asked for explicitly would be world-writable."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("permissive_umask")
def test_export_directory_and_files_are_private_under_a_permissive_umask(tmp_path: Path) -> None:
    """Codes readable by other local users: under umask 000 the exports folder is created
    0700 and an export file 0600."""
    exports = tmp_path / "data" / "exports"
    private_directory(exports)
    with _resumed(exports / "order-1.csv", 0) as file:
        file.write(b"row\n")
    assert _mode(exports) == 0o700
    assert _mode(exports / "order-1.csv") == 0o600


@pytest.mark.usefixtures("permissive_umask")
def test_loosened_folders_and_files_are_made_private_again(tmp_path: Path) -> None:
    """When the folders were opened up (the embedded PostgreSQL, as root, opens the parents of
    its data folder to its own user) or an old file is world-readable, the signer closes the
    exports folder to 0700 and the file it resumes to 0600."""
    data = tmp_path / "data"
    exports = data / "exports"
    exports.mkdir(parents=True, mode=0o777)
    data.chmod(0o755)
    exports.chmod(0o777)
    old = exports / "order-2.csv"
    old.write_bytes(b"code,typed,claim_url\n")
    old.chmod(0o666)
    private_directory(exports)
    with _resumed(old, old.stat().st_size) as file:
        file.write(b"row\n")
    assert _mode(exports) == 0o700
    assert _mode(old) == 0o600
    assert old.read_bytes() == b"code,typed,claim_url\nrow\n"
