"""`sovra keys create|list|revoke`: API keys for tenants, kept in the platform database."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from sovra.access.keys import ApiKey, BudgetPeriod, KeyStore
from sovra.database import Database
from sovra.errors import ConfigError, Problem
from sovra.table import print_table

if TYPE_CHECKING:
    from sovra.config import PlatformConfig

__all__ = ["add_keys_commands", "run_keys_command"]


def add_keys_commands(keys: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    commands = keys.add_subparsers(dest="keys_command", required=True)
    create = commands.add_parser("create", help="create a key (printed once)", parents=[common])
    create.add_argument("--tenant", required=True)
    create.add_argument("--name", default="", help="a label for the key (default: the tenant)")
    create.add_argument("--models", help="comma-separated models this key may use (default: all)")
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens (input + output) per minute")
    create.add_argument("--budget", type=int, help="tokens per budget period")
    create.add_argument("--period", choices=[p.value for p in BudgetPeriod], help="budget period")
    listing = commands.add_parser("list", help="list keys (never their tokens)", parents=[common])
    listing.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = commands.add_parser("revoke", help="revoke a key by id", parents=[common])
    revoke.add_argument("id")


def run_keys_command(args: argparse.Namespace, config: PlatformConfig) -> int:
    database = Database(config.database_url)
    database.migrate()
    with database.session() as db:
        store = KeyStore(db)
        if args.keys_command == "create":
            return _create(store, args)
        if args.keys_command == "list":
            _print_keys(store.all(include_revoked=args.all))
            return 0
        if not store.revoke(args.id):
            raise ConfigError([Problem("command line", "id", f"no active key with id {args.id!r}")])
        print(f"revoked {args.id} (gateways stop accepting it within a few seconds)")
        return 0


def _create(store: KeyStore, args: argparse.Namespace) -> int:
    models = frozenset(m.strip() for m in args.models.split(",") if m.strip()) if args.models else None
    key, token = store.create(
        args.tenant, args.name, models, args.rpm, args.tpm, args.budget,
        BudgetPeriod(args.period) if args.period else None,
    )  # fmt: skip
    print(f"created key {key.id} for tenant {key.tenant}; this is the only time it is shown:\n{token}")
    return 0


def _print_keys(keys: list[ApiKey]) -> None:
    header = ("ID", "TENANT", "NAME", "MODELS", "RPM", "TPM", "BUDGET", "CREATED", "STATUS")
    print_table([header, *(_row(key) for key in keys)])


def _row(key: ApiKey) -> tuple[str, ...]:
    budget = f"{key.budget_tokens}/{key.budget_period}" if key.budget_tokens else "-"
    created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(key.created_at))
    return (
        key.id, key.tenant, key.name, ",".join(sorted(key.models)) if key.models is not None else "*",
        str(key.rpm or "-"), str(key.tpm or "-"), budget, created, "revoked" if key.revoked_at else "active",
    )  # fmt: skip
