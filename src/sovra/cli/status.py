"""`sovra status`, `sovra load NAME`, `sovra unload NAME`: the running gateway's services
(`GET /v1/status`, `POST /v1/status/{name}/load|unload`), with an operator token from this machine."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

from sovra.errors import SovraError

if TYPE_CHECKING:
    from sovra.config import PlatformConfig

__all__ = ["add_status_command", "run_status_command"]


def add_status_command(command: argparse.ArgumentParser, name: bool = False) -> None:
    if name:
        command.add_argument("name", help="the service, as declared")
    command.add_argument("--url", help="the gateway (default: http://<listen.host>:<listen.port>)")
    command.add_argument("--json", action="store_true", help="print the answer as JSON")


def run_status_command(args: argparse.Namespace, config: PlatformConfig) -> int:
    if args.command in ("load", "unload"):
        answer = _call(args, config, f"/v1/status/{args.name}/{args.command}", timeout=600)
        if args.json:
            _print_json(answer)
        else:
            print(f"{args.name}: {answer['state']}")
        return 0
    services: dict[str, dict[str, Any]] = _call(args, config, "/v1/status")["services"]
    if args.json:
        _print_json(services)
        return 0
    print(f"{'SERVICE':<24} {'STATE':<9} {'REPLICAS':<22} {'IN FLIGHT':>9} {'HELD':>5}  IDLE")
    for name, service in services.items():
        replicas = ", ".join(f"#{r['index']} {r['state']}" + (f" :{r['port']}" if r.get("port") else "")
                             for r in service.get("replicas", [])) or "-"  # fmt: skip
        idle = f"{service['idle_seconds']:g} s" if "idle_seconds" in service else "-"
        if "unloads_in_seconds" in service:
            idle += f" (unloads in {service['unloads_in_seconds']:g} s)"
        counts = f"{service['in_flight']:>9} {service['held']:>5}"
        print(f"{name:<24} {service['state']:<9} {replicas:<22} {counts}  {idle}")
        for replica in service.get("replicas", []):
            if replica.get("failure"):
                print(f"  #{replica['index']}: {replica['failure']}")
    return 0


def _print_json(value: object) -> None:
    json.dump(value, sys.stdout, indent=2)
    print()


def _call(args: argparse.Namespace, config: PlatformConfig, path: str, timeout: float = 10) -> dict[str, Any]:
    """The gateway's JSON answer to `path` (POST for load and unload), or a SovraError saying why not."""
    from sovra.runtime.auth import client_token

    base = (args.url or f"http://{config.listen.host}:{config.listen.port}").rstrip("/")
    request = urllib.request.Request(base + path, method="GET" if path == "/v1/status" else "POST")
    if token := client_token(config, os.environ):
        request.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as error:
        raise SovraError(f"{base}: {error.code} {_message(error)}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise SovraError(f"{base}: no gateway answers there ({reason}); is `sovra up` running?") from None


def _message(error: urllib.error.HTTPError) -> str:
    with error:  # the answer's socket, closed once read
        try:
            return str(json.load(error)["error"]["message"])
        except (ValueError, KeyError, TypeError):
            return str(error.reason)
