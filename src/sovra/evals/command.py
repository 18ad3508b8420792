"""Running `sovra eval` (the arguments are in `sovra/cli/evaluate.py`, which imports this only when
the command runs, so `sovra --help` loads none of it)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import aiohttp

from sovra.config import PlatformConfig
from sovra.database import Database
from sovra.errors import ConfigError, Problem
from sovra.evals import export, report, toolchain
from sovra.evals.history import EvalHistory
from sovra.evals.runner import RunOptions, run_suite
from sovra.evals.suite import ProviderSpec, Suite, load_suite
from sovra.spec import load_catalog
from sovra.table import print_table

__all__ = ["FAILED", "run"]

FAILED = 100  # promptfoo's exit code when tests fail


def _suite(args: argparse.Namespace, config: PlatformConfig) -> Suite:
    base_url = args.base_url or f"http://{config.listen.host}:{config.listen.port}/v1"
    suite = load_suite(args.suite, base_url, args.api_key)
    if args.compare:
        models = [m.strip() for m in args.compare.split(",") if m.strip()]
        if not models:
            raise ConfigError([Problem("--compare", "", "name at least one model")])
        template = suite.providers[0]
        providers = tuple(ProviderSpec(f"openai:{template.kind}:{m}", m, template.config) for m in models)
        suite = dataclasses.replace(suite, providers=providers)
    return suite


def _revisions(catalog: Path) -> dict[str, str]:
    try:
        services = load_catalog(catalog).services if catalog.exists() else ()
    except ConfigError:
        return {}
    return {service.name: service.spec.model.weights.pin or "-" for service in services}


def _history(args: argparse.Namespace, history: EvalHistory) -> int:
    """One row per run and model: the pass rate over time, per suite and model."""
    rows = [["run", "when", "suite", "model", "tests", "pass rate", "suite hash"]]
    for run in history.runs(args.history_suite, limit=50):
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.at))
        for label, (tests, rate) in sorted(history.model_rates(run.id).items()):
            served = run.models.get(label, label)
            rows.append([run.id, when, run.suite, served[:48], str(tests), f"{rate:.1%}", run.suite_hash])
    print_table(rows)
    return 0


def _tool_chain(args: argparse.Namespace, config: PlatformConfig) -> int:
    """`sovra eval tool-chain --compare m1,m2`: the longest chain of sequential tool calls each holds."""
    models = [m.strip() for m in (args.compare or "").split(",") if m.strip()]
    if not models:
        raise ConfigError([Problem("--compare", "", "name the models to stress, e.g. --compare qwen-coder")])
    base_url = args.base_url or f"http://{config.listen.host}:{config.listen.port}/v1"
    key = args.api_key
    rows = [["model", "longest chain", "first break"]]

    async def stress() -> None:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_read=args.timeout)
        ) as session:
            for model in models:
                spec = ProviderSpec(
                    f"openai:chat:{model}",
                    model,
                    {"apiBaseUrl": base_url, **({"apiKey": key} if key else {})},
                )
                depth, trials = await toolchain.max_chain(session, spec)
                broken = next((t for t in trials if not t.held), None)
                rows.append([model, str(depth), f"depth {broken.depth}: {broken.reason}" if broken else "-"])

    asyncio.run(stress())
    print_table(rows)
    return 0


def run(args: argparse.Namespace, config: PlatformConfig) -> int:
    history = EvalHistory(Database(config.database_url))
    history.migrate()
    if str(args.suite) == "history" and not args.suite.is_file():
        return _history(args, history)
    if str(args.suite) == "tool-chain" and not args.suite.is_file():
        return _tool_chain(args, config)
    suite = _suite(args, config)
    grader = None
    if args.grader:
        base = suite.providers[0]
        grader = ProviderSpec(f"openai:chat:{args.grader}", args.grader, base.config)
    options = RunOptions(args.concurrency, args.retries, args.timeout, grader, progress=not args.no_progress)
    outcomes = asyncio.run(run_suite(suite, options))
    print_table(report.table(outcomes))
    if len(suite.providers) > 1:  # --compare: the models side by side
        print()
        print_table(report.by_model(outcomes))
    summary = report.summarise(outcomes)
    print(
        f"\n{suite.description}: {summary.passed} passed, {summary.failed} failed, {summary.errors} errors "
        f"({summary.pass_rate:.1%})",
        file=sys.stderr,
    )
    run_id = None
    if not args.no_store:
        run = history.record(suite, outcomes, _revisions(args.file))
        run_id = run.id
        regression = history.regression(run, args.regression / 100)
        if regression is not None:
            print(
                f"REGRESSION: {suite.description} pass rate {regression.previous.pass_rate:.1%} → "
                f"{regression.current.pass_rate:.1%} (run {regression.previous.id} → {run.id})",
                file=sys.stderr,
            )
            for key in regression.flipped:
                print(f"  now failing: {key}", file=sys.stderr)
    if args.output:
        report.write(args.output, suite, outcomes, run_id)
    if args.junit:
        args.junit.write_bytes(report.junit(suite, outcomes))
    if args.metrics_file or args.push:
        text = export.exposition(suite.description, outcomes, time.time())
        if args.metrics_file:
            export.write_textfile(args.metrics_file, text)
        if args.push:
            asyncio.run(export.push(args.push, text))
    if args.pass_rate is not None:
        return 0 if summary.pass_rate * 100 >= args.pass_rate else FAILED
    return 0 if summary.passed == summary.total else FAILED
