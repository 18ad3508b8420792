"""`sovra eval`: run a promptfoo-format suite against the gateway, natively (no Node, no telemetry,
no network beyond the gateway). Its arguments here; the work in `sovra/evals/command.py`, imported
when the command runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sovra.config import PlatformConfig

__all__ = ["add_eval_command", "run_eval_command"]


def add_eval_command(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "suite", type=Path, nargs="?", default=Path("promptfooconfig.yaml"), help="promptfoo config"
    )
    command.add_argument("--base-url", help="OpenAI-compatible API root (default: this machine's gateway)")
    command.add_argument("--api-key", help="bearer token (default: $SOVRA_API_KEY or the generated token)")
    command.add_argument("-j", "--concurrency", type=int, default=4)
    command.add_argument("--retries", type=int, default=2, help="extra attempts after a transport error")
    command.add_argument("--timeout", type=float, default=120.0, help="seconds per test")
    command.add_argument("--grader", help="model for model-graded assertions (default: the tested model)")
    command.add_argument("--compare", help="comma-separated models: run the suite against each, side by side")
    command.add_argument("-o", "--output", type=Path, help="results file in promptfoo's format (JSON)")
    command.add_argument("--junit", type=Path, help="JUnit XML report")
    command.add_argument("--pass-rate", type=float, help="exit 0 when at least this %% of tests pass")
    command.add_argument("--no-progress", action="store_true")
    command.add_argument("--no-store", action="store_true", help="do not remember this run")
    command.add_argument(
        "--regression",
        type=float,
        default=5.0,
        help="report a regression when the pass rate drops by more than this many points",
    )
    command.add_argument(
        "--metrics-file", type=Path, help="write the results for node-exporter's textfile collector"
    )
    command.add_argument("--push", help="POST the results in Prometheus' text format to this URL")
    command.add_argument(
        "-f",
        "--file",
        type=Path,
        default=Path(os.environ.get("SOVRA_CATALOG", "catalog")),
        help="catalog, for the models' revisions in the history (default: ./catalog)",
    )
    command.add_argument("--suite-name", dest="history_suite", help="with `history`: only this suite")


def run_eval_command(args: argparse.Namespace, config: PlatformConfig) -> int:
    from sovra.evals.command import run
    from sovra.runtime.auth import client_token

    args.api_key = args.api_key or client_token(config, os.environ)
    return run(args, config)
