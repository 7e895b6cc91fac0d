"""The one reading of `Authorization: Bearer …` shared by the API, the till path and probes."""

from __future__ import annotations

import pytest

from qrloop.bearer import credential_of


@pytest.mark.parametrize(
    ("header", "credential"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER  abc  ", "abc"),
        ("Bearer ", None),
        ("Basic abc", None),
        ("abc", None),
        ("", None),
    ],
)
def test_a_bearer_header_gives_its_credential_and_nothing_else_does(
    header: str, credential: str | None
) -> None:
    """The scheme is matched case-insensitively; any other scheme, a bare credential or an
    empty one gives None, which every caller answers 401."""
    assert credential_of(header) == credential
