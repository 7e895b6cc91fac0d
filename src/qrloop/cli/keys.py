"""`qrloop keys`: the key ring that signs codes, terminal tokens, consumer hashes and webhook
secrets (keys/README.md)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from qrloop.cli.common import table

if TYPE_CHECKING:
    import argparse

    from qrloop.cli.common import Commands
    from qrloop.codes.keyring import KeyEntry, KeyRing
    from qrloop.settings import Settings

# The choices of codes.keyring's Purpose and Algorithm, spelled out so that `--help` need not
# import the cryptography behind them.
_PURPOSES = ("code", "token", "consumer", "webhook")
_ALGORITHMS = ("hmac-sha256", "ed25519")
_DEFAULT_ALGORITHM = {"token": "ed25519"}  # terminal JWTs are EdDSA only
_RING = """\
Manage the key ring in QRLOOP_KEYS_DIR (keys/keyring.json); running API processes pick up
changes within a second. A ring given in QRLOOP_KEYRING is managed where it is kept.
keys/README.md tells when to rotate, retire and revoke."""


def register(commands: Commands) -> None:
    keys = commands.add_parser("keys", help="manage the signing key ring", description=_RING)
    actions = keys.add_subparsers(title="actions", required=True, metavar="ACTION")
    init = actions.add_parser(
        "init",
        help="add each key the ring needs to run and lacks",
        description="Add an active key of each kind qrloop runs on (code keys of both"
        " algorithms, and token, consumer and webhook keys) that the ring has none of, as"
        " `qrloop serve` does on its first start. Changes nothing in a complete ring.",
    )
    init.set_defaults(run=cmd_init)
    for action, what in (
        ("generate", "add an active key"),
        ("rotate", "add an active key; older ones of its purpose and algorithm verify only"),
    ):
        command = actions.add_parser(action, help=what, description=what.capitalize() + ".")
        command.add_argument(
            "--purpose", choices=_PURPOSES, default="code", help="what it signs (default code)"
        )
        command.add_argument(
            "--algorithm",
            choices=_ALGORITHMS,
            help="how it signs (default hmac-sha256, for token keys ed25519)",
        )
        command.set_defaults(run=cmd_add, action=action)
    listed = actions.add_parser(
        "list", help="list keys (never their secrets)", description="List keys, never secrets."
    )
    listed.set_defaults(run=cmd_list)
    for action, status, what in (
        ("revoke", "revoked", "its codes are refused as revoked_key; final"),
        ("retire", "retired", "its codes have lapsed and are refused as expired"),
    ):
        command = actions.add_parser(
            action, help=f"mark a key {status}", description=f"Mark a key {status}: {what}."
        )
        command.add_argument("key_id", type=int, metavar="KEY_ID", help="from `keys list`")
        command.set_defaults(run=cmd_status, status=status)


def _keyring(settings: Settings) -> KeyRing:
    from qrloop.codes.keyring import KeyRing

    if settings.keyring_json:
        raise SystemExit(
            "qrloop: the key ring comes from QRLOOP_KEYRING; manage it where it is kept"
        )
    return KeyRing.load(settings.keyring_path)


def cmd_init(settings: Settings, _: argparse.Namespace) -> int:
    from qrloop.codes.keyring import ensure_dev_keys

    ring = _keyring(settings)
    created = ensure_dev_keys(ring)
    if not created:
        print(f"{settings.keyring_path} has every key qrloop needs")
        return 0
    ring.save(settings.keyring_path)
    _added(*created)
    return 0


def cmd_add(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.codes.keyring import Algorithm, KeyRingError, Purpose

    ring = _keyring(settings)
    purpose = Purpose(args.purpose)
    algorithm = Algorithm(args.algorithm or _DEFAULT_ALGORITHM.get(args.purpose, "hmac-sha256"))
    try:
        if args.action == "rotate":
            entry = ring.rotate(purpose, algorithm)
        else:
            entry = ring.generate(purpose, algorithm)
    except KeyRingError as error:
        print(f"qrloop: {error}", file=sys.stderr)
        return 1
    ring.save(settings.keyring_path)
    _added(entry)
    return 0


def _added(*entries: KeyEntry) -> None:
    for entry in entries:
        print(f"key {entry.id}: {entry.purpose.value} {entry.algorithm.value} {entry.status.value}")
    print("Running API processes on this key file pick them up within a second.", file=sys.stderr)


def cmd_list(settings: Settings, _: argparse.Namespace) -> int:
    rows = [("id", "purpose", "algorithm", "status", "created")]
    rows += [
        (
            str(entry.id),
            entry.purpose.value,
            entry.algorithm.value,
            entry.status.value,
            entry.created.isoformat(timespec="seconds"),
        )
        for entry in _keyring(settings).entries()
    ]
    print(*table(rows), sep="\n")
    return 0


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.codes.keyring import KeyRingError, KeyStatus

    ring = _keyring(settings)
    try:
        entry = ring.set_status(args.key_id, KeyStatus(args.status))
    except KeyRingError as error:
        print(f"qrloop: {error}", file=sys.stderr)
        return 1
    ring.save(settings.keyring_path)
    print(f"key {entry.id} is now {entry.status.value}")
    return 0
