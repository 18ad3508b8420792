"""Several gateways, one ledger, under faults — the CI-sized run of `bench/fleet.py`: three
`sovra up` gateways in network namespaces of their own behind HAProxy, one PostgreSQL ledger, one
Redis for limits, the real llama-server with SmolLM2; a gateway SIGKILLed, one cut from Redis, one
from PostgreSQL, PostgreSQL restarted, Redis restarted — under a streaming and non-streaming load of
three tenants with limits. Every complete answer has exactly one ledger row, clients see errors only
for requests in flight on the killed gateway, limits hold within their documented bounds, and each
gateway recovers by itself."""

import asyncio
import shutil
import tempfile
from pathlib import Path

import pytest
from bench.fleet import fleet, missing, print_report, prove

pytestmark = pytest.mark.engine


def test_the_fleet_keeps_its_ledger_and_limits_under_faults(llama_server: Path, smollm2: Path) -> None:
    if reason := missing():
        pytest.skip(f"{reason}; skipped")
    work = Path(tempfile.mkdtemp(prefix="sovra-fleet-"))
    work.chmod(0o755)  # PostgreSQL runs as its own user under it
    try:
        with fleet(work, llama_server, smollm2) as running:
            result, calls = asyncio.run(prove(running, workers=8, seconds=45))
        print_report(result, calls, 8, 45)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert result.problems == []
    assert result.rows_found == result.rows_expected > 100
    assert result.refused > 0  # the limits were really reached
    assert all(seconds < 30 for seconds in result.recovery.values())
