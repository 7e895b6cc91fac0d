"""`qrloop merchants`: create merchants, manage their API keys, override their quotas."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from qrloop.cli.common import moment, table, with_pool

if TYPE_CHECKING:
    import asyncpg

    from qrloop.accounts.schemas import ApiKeyOut, NewApiKey
    from qrloop.cli.common import Commands
    from qrloop.settings import Settings

# quotas.QUOTAS, as options.
_QUOTAS = {
    "outstanding-codes": "codes of its orders not cancelled or failed, in campaigns not ended",
    "orders-per-day": "orders placed in the last 24 hours",
}
_SHOWN_ONCE = "The API key is shown only this once; keep it secret."


def register(commands: Commands) -> None:
    merchants = commands.add_parser(
        "merchants",
        help="manage merchants, their API keys and quotas",
        description="Manage merchants, their API keys and their quotas.",
    )
    actions = merchants.add_subparsers(title="actions", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create",
        help="create a merchant; prints its id and API key (once)",
        description="Create a merchant, its first API key (label `initial`) and its dashboard"
        " owner; print `merchant_id=…`, `api_key=…`, `owner_email=…` and `owner_invite_url=…`"
        " lines, ready for `export $(…)`. The owner sets a password at that link (once, within"
        " QRLOOP_DASHBOARD_INVITATION_HOURS) and invites the others from the dashboard.",
    )
    create.add_argument("name", metavar="NAME", help="the merchant's name, as tills show it")
    create.add_argument(
        "--owner-email",
        metavar="EMAIL",
        help="the email the owner logs in to the dashboard with (asked for when omitted on a"
        " terminal; required otherwise)",
    )
    create.set_defaults(run=cmd_create)
    invite = actions.add_parser(
        "invite",
        help="a one-time link to the dashboard for a merchant's person (a new owner, a reset)",
        description="Print a one-time link for EMAIL to set a dashboard password for the"
        " merchant: a new person (an owner unless --role says otherwise), one whose"
        " invitation expired, or one who forgot their password (their role kept unless"
        " --role is given; their open sessions end when the link is used). An email of"
        " another merchant's person is refused.",
    )
    invite.add_argument("merchant_id", type=int, metavar="MERCHANT_ID", help="whose dashboard")
    invite.add_argument("--email", required=True, help="the person's email")
    invite.add_argument("--role", choices=("owner", "manager", "viewer"), help="their role")
    invite.set_defaults(run=cmd_invite)
    _register_keys(actions)
    _register_quota(actions)


def _register_keys(actions: Commands) -> None:
    keys = actions.add_parser(
        "keys",
        help="manage a merchant's API keys",
        description="Manage merchants' API keys (as POST|GET /v1/api-keys does for one).",
    )
    key_actions = keys.add_subparsers(title="actions", required=True, metavar="ACTION")
    create = key_actions.add_parser(
        "create", help="create an API key; prints it once", description="Create an API key."
    )
    create.add_argument("merchant_id", type=int, metavar="MERCHANT_ID", help="whose key")
    create.add_argument("--label", required=True, help="what the key is for, to tell keys apart")
    create.set_defaults(run=cmd_key_create)
    listed = key_actions.add_parser(
        "list",
        help="list a merchant's API keys (never the keys)",
        description="List a merchant's API keys: id, prefix, label and when each was created,"
        " last used and revoked. Never the keys.",
    )
    listed.add_argument("merchant_id", type=int, metavar="MERCHANT_ID", help="whose keys")
    listed.set_defaults(run=cmd_keys_list)
    revoke = key_actions.add_parser(
        "revoke",
        help="revoke an API key (not the last live one)",
        description="Revoke an API key at once, on every API process. A merchant's last live"
        " key is kept: create its successor first.",
    )
    revoke.add_argument(
        "key_id", type=int, metavar="KEY_ID", help="the key's id, from `merchants keys list`"
    )
    revoke.set_defaults(run=cmd_key_revoke)


def _register_quota(actions: Commands) -> None:
    quota = actions.add_parser(
        "quota",
        help="show or override a merchant's quotas",
        description="Show a merchant's quotas; the options given override them for this"
        " merchant (`default` clears an override).",
    )
    quota.add_argument("merchant_id", type=int, metavar="MERCHANT_ID", help="whose quotas")
    for name, counted in _QUOTAS.items():
        quota.add_argument(
            f"--{name}", type=_limit, metavar="N|default", default=argparse.SUPPRESS, help=counted
        )
    quota.set_defaults(run=cmd_quota)


def _owner_email(args: argparse.Namespace) -> str | None:
    """The owner's email: the option, else asked for on a terminal (a script must say it)."""
    if args.owner_email:
        return str(args.owner_email)
    if not sys.stdin.isatty():
        return None
    return input("The owner's email (they log in to the dashboard with it): ").strip() or None


def cmd_create(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.dashboard import users
    from qrloop.errors import Problem

    email = _owner_email(args)
    if email is None:
        print("qrloop: give the owner's email: --owner-email EMAIL", file=sys.stderr)
        return 2
    hours = settings.dashboard_invitation_hours
    try:
        created = with_pool(
            settings, lambda pool: users.create_merchant(pool, args.name, email, hours)
        )
    except Problem as refusal:
        print(f"qrloop: {refusal.detail}", file=sys.stderr)
        return 1
    print(f"merchant_id={created.merchant_id}")
    print(f"api_key={created.api_key}")
    print(f"owner_email={created.owner.email}")
    print(f"owner_invite_url={created.owner.url(settings.base_url)}")
    print(_SHOWN_ONCE, file=sys.stderr)
    print(
        f"The owner sets a dashboard password at owner_invite_url: it works once, within"
        f" {hours} hours.",
        file=sys.stderr,
    )
    return 0


def cmd_invite(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg

    from qrloop.dashboard import users
    from qrloop.errors import Problem

    hours = settings.dashboard_invitation_hours

    async def invite(pool: asyncpg.Pool) -> users.Invitation:
        role = users.Role(args.role) if args.role else None
        return await users.invite(pool, args.merchant_id, args.email, role, hours, reset=True)

    try:
        invitation = with_pool(settings, invite)
    except asyncpg.ForeignKeyViolationError:
        print(f"qrloop: no merchant {args.merchant_id}", file=sys.stderr)
        return 1
    except Problem as refusal:
        print(f"qrloop: {refusal.detail}", file=sys.stderr)
        return 1
    print(f"invite_url={invitation.url(settings.base_url)}")
    print(f"It works once, within {hours} hours.", file=sys.stderr)
    return 0


def cmd_key_create(settings: Settings, args: argparse.Namespace) -> int:
    import asyncpg
    import msgspec

    from qrloop.accounts import api_keys
    from qrloop.accounts.schemas import ApiKeyIn

    try:
        label = msgspec.convert({"label": args.label}, ApiKeyIn).label
    except msgspec.ValidationError as error:
        print(f"qrloop: bad label: {error}", file=sys.stderr)
        return 2

    async def create(pool: asyncpg.Pool) -> NewApiKey | None:
        try:
            return await api_keys.create(pool, args.merchant_id, label)
        except asyncpg.ForeignKeyViolationError:
            return None

    key = with_pool(settings, create)
    if key is None:
        print(f"qrloop: no merchant {args.merchant_id}", file=sys.stderr)
        return 1
    print(f"key_id={key.id}")
    print(f"api_key={key.api_key}")
    print(_SHOWN_ONCE, file=sys.stderr)
    return 0


def cmd_keys_list(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.accounts import api_keys

    keys = with_pool(settings, lambda pool: api_keys.listed(pool, args.merchant_id))
    rows: list[tuple[str, ...]] = [("id", "prefix", "label", "created", "last used", "revoked")]
    rows += [
        (
            str(key.id),
            key.prefix or "-",
            key.label,
            *(moment(m) for m in (key.created_at, key.last_used_at, key.revoked_at)),
        )
        for key in keys
    ]
    print(*table(rows), sep="\n")
    return 0


def cmd_key_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.accounts import api_keys
    from qrloop.errors import Problem, Reason

    async def revoke(pool: asyncpg.Pool) -> ApiKeyOut:
        merchant_id = await api_keys.owner_of(pool, args.key_id)
        if merchant_id is None:
            raise Problem(Reason.NOT_FOUND, f"No API key {args.key_id}.")
        return await api_keys.revoke(pool, merchant_id, args.key_id)

    try:
        key = with_pool(settings, revoke)
    except Problem as refusal:
        print(f"qrloop: {refusal.detail}", file=sys.stderr)
        return 1
    print(f"key {key.id} ({key.label}) revoked at {moment(key.revoked_at)}")
    return 0


def _limit(text: str) -> int | None:
    """A quota override: a count, or `default` to fall back to the setting."""
    if text == "default":
        return None
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("a quota is 0 or more")
    return value


def cmd_quota(settings: Settings, args: argparse.Namespace) -> int:
    from qrloop.issuance import quotas

    # Options left out are not in `args` (SUPPRESS); `default` is None: clear the override.
    changes = {name: getattr(args, name) for name in quotas.QUOTAS if hasattr(args, name)}
    try:
        overrides = with_pool(
            settings, lambda pool: quotas.override(pool, args.merchant_id, changes)
        )
    except LookupError as error:
        raise SystemExit(f"qrloop: {error}") from None
    defaults = quotas.Quotas.of(settings)
    for name, limit in overrides.items():
        source = "override" if limit is not None else "default"
        print(f"{name}={limit if limit is not None else getattr(defaults, name)} ({source})")
    return 0
