"""Lua scripts as qrloop runs them: the file's text behind a one-line prologue that names the
script's KEYS after the fields of its tuple in keyspace.py, so their order is written once.

`source("qrloop.redemption", "redeem.lua", keyspace.RedeemKeys._fields)` starts with
`local epoch, used, ... = KEYS[1], KEYS[2], ...`; the script uses the names only.
"""

from __future__ import annotations

from importlib import resources


def source(package: str, name: str, keys: tuple[str, ...] = ()) -> str:
    """The script `name` of `package`, its KEYS named `keys` in order."""
    text = resources.files(package).joinpath(name).read_text()
    if not keys:
        return text
    indexed = ", ".join(f"KEYS[{index}]" for index in range(1, len(keys) + 1))
    return f"local {', '.join(keys)} = {indexed}\n{text}"
