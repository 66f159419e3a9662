"""``ge2e serve keys add|list|revoke``: the service's API keys, kept (as digests) in its database."""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

ROLES = ("verify", "enroll", "admin")


def register(serve: argparse.ArgumentParser) -> None:
    """Adds ``keys`` under the ``serve`` command's parser."""
    sub = serve.add_subparsers(dest="keys_command", metavar="keys", required=False)
    keys = sub.add_parser("keys", help="manage API keys (add, list, revoke)")
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="create a key and print it (shown this once)")
    add.add_argument("--tenant", default="default", help="the tenant the key belongs to (default: default)")
    add.add_argument("--role", required=True, choices=ROLES, help="verify < enroll < admin")
    add.add_argument("--name", default="", help="a note on who holds the key")
    add.add_argument("--rate-limit", type=int, metavar="N", help="requests per minute (default: the service's)")
    listing = actions.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--tenant", help="only this tenant's")
    revoke = actions.add_parser("revoke", help="revoke a key by its id")
    revoke.add_argument("key_id")
    for action in (add, listing, revoke):
        action.add_argument("--db", required=True, metavar="FILE", help="the service's SQLite database")
        action.set_defaults(func=run)


def database_has_keys(db: str | Path) -> bool:
    """Whether the database at ``db`` holds an active key (False when there is no file yet: none is created)."""
    if not Path(db).is_file():
        return False
    from ge2e.serve.db import Database
    from ge2e.serve.keys import KeyStore

    return KeyStore(Database(db)).has_keys()


def _when(t: float | None) -> str:
    return "-" if t is None else datetime.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")


def run(args: argparse.Namespace) -> int:
    from ge2e.serve.db import Database
    from ge2e.serve.keys import KeyStore, Role

    store = KeyStore(Database(args.db))
    if args.keys_action == "add":
        key, token = store.add(args.tenant, Role(args.role), args.name, args.rate_limit)
        print(f"key {key.id} for tenant {key.tenant!r}, role {key.role}; its secret, shown this once:")
        print(token)
    elif args.keys_action == "list":
        print(f"{'id':12}  {'tenant':16}  {'role':6}  {'rate/min':8}  {'created':19}  {'revoked':19}  name")
        for k in store.list(args.tenant):
            rate = "-" if k.rate_per_minute is None else str(k.rate_per_minute)
            print(
                f"{k.id:12}  {k.tenant:16}  {k.role.value:6}  {rate:8}  {_when(k.created):19}  "
                f"{_when(k.revoked):19}  {k.name}"
            )
    else:
        store.revoke(args.key_id)
        print(f"key {args.key_id} revoked")
    return 0
