"""`sovra usage [--by tenant|model|key] [--since 24h|7d|2026-11-01]`: what the ledger says."""

from __future__ import annotations

import argparse
import calendar
import re
import time
from typing import TYPE_CHECKING

from sovra.database import Database
from sovra.errors import ConfigError, Problem
from sovra.table import print_table

if TYPE_CHECKING:
    from sovra.config import PlatformConfig

__all__ = ["add_usage_command", "parse_since", "run_usage_command", "usage_report"]

_GROUPS = {"tenant": "tenant", "model": "served_model", "key": "key_id"}
_RELATIVE = re.compile(r"^(\d+)([mhd])$")


def add_usage_command(usage: argparse.ArgumentParser) -> None:
    usage.add_argument("--by", choices=sorted(_GROUPS), default="tenant")
    usage.add_argument("--since", default="30d", help="30m, 24h, 7d, or a date YYYY-MM-DD (UTC); default 30d")


def parse_since(text: str, now: float) -> float:
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative[1]), relative[2]
        return now - amount * {"m": 60, "h": 3600, "d": 86400}[unit]
    try:
        return float(calendar.timegm(time.strptime(text, "%Y-%m-%d")))
    except ValueError:
        raise ConfigError(
            [Problem("command line", "--since", f"{text!r}: use 30m, 24h, 7d or YYYY-MM-DD")]
        ) from None


def usage_report(database: Database, by: str, since: float) -> list[tuple[str, ...]]:
    column = _GROUPS[by]
    sql = (
        f"SELECT {column}, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), SUM(input_tokens), "
        f"SUM(output_tokens), SUM(cached_tokens), AVG(ttft_ms), AVG(duration_ms) "
        f"FROM usage WHERE at >= ? GROUP BY {column} ORDER BY SUM(input_tokens) + SUM(output_tokens) DESC"
    )
    with database.session() as db:
        rows = db.execute(sql, (since,))
    header: tuple[str, ...] = (
        by.upper(),
        "REQUESTS",
        "ERRORS",
        "INPUT",
        "OUTPUT",
        "CACHED",
        "AVG_TTFT_MS",
        "AVG_MS",
    )
    return [
        header,
        *(
            (str(group), str(n), str(errors), str(inp), str(out), str(cached), _ms(ttft), _ms(ms))
            for group, n, errors, inp, out, cached, ttft, ms in rows
        ),
    ]


def _ms(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.1f}"


def run_usage_command(args: argparse.Namespace, config: PlatformConfig) -> int:
    database = Database(config.database_url)
    database.migrate()
    from sovra.access.journal import journal_directory
    from sovra.access.ledger import replay_orphans

    replay_orphans(database, journal_directory(config.home, config.database_url))  # rows of dead gateways
    rows = usage_report(database, args.by, parse_since(args.since, time.time()))
    print_table(rows)
    return 0
