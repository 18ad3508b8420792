"""`sovra` command line: up, preload, validate, render, dashboards, function serve, engines install,
keys, usage, eval, router train.

Errors print as `file: field: reason` lines and exit non-zero (2 for bad configuration, 1 for
everything else); a traceback is a bug. Each command imports what it needs when it runs (`keys.py`,
`usage.py`, `evaluate.py` hold the arguments of theirs), so `sovra --help` loads no heavy library.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sovra.cli.evaluate import add_eval_command, run_eval_command
from sovra.cli.keys import add_keys_commands, run_keys_command
from sovra.cli.status import add_status_command, run_status_command
from sovra.cli.usage import add_usage_command, run_usage_command
from sovra.errors import ConfigError, Problem, SovraError
from sovra.logs import configure_logging

if TYPE_CHECKING:  # the commands import what they need when they run: `sovra --help` stays quick
    from sovra.config import PlatformConfig
    from sovra.spec import Catalog

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sovra", description="Self-hosted platform for open-weight LLMs.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    def with_sources(command: argparse.ArgumentParser) -> argparse.ArgumentParser:
        command.add_argument(
            "-f", "--file", type=Path, default=Path(os.environ.get("SOVRA_CATALOG", "catalog")),
            help="InferenceService file or directory (default: ./catalog, or $SOVRA_CATALOG)",
        )  # fmt: skip
        command.add_argument(
            "-c", "--config", type=Path, default=_default_config(),
            help="platform config (default: ./sovra.yaml if present, or $SOVRA_CONFIG)",
        )  # fmt: skip
        return command

    up = with_sources(commands.add_parser("up", help="start every declared service behind the gateway"))
    up.add_argument("--host", help="listen address (default 127.0.0.1)")
    up.add_argument("--port", type=int, help="listen port (default 8000)")
    up.add_argument("--no-auth", action="store_true", help="serve without tokens (loopback addresses only)")
    up.add_argument("--engine-logs", action="store_true", help="forward every engine log line")
    with_sources(commands.add_parser("preload", help="fetch the weights of every declared service"))
    with_sources(commands.add_parser("validate", help="check declarations and the platform config"))
    with_sources(commands.add_parser("plan", help="predicted memory of each service against the budget"))
    engines = commands.add_parser("engines", help="inference engines")
    engines_commands = engines.add_subparsers(dest="engines_command", required=True)
    install = engines_commands.add_parser(
        "install", help="obtain llama-server (build and prove it on this CPU once, if needed)"
    )
    install.add_argument("-c", "--config", type=Path, default=_default_config())
    install.add_argument(
        "--rebuild", action="store_true", help="discard the cached build and build (and prove) a new one"
    )
    config_option = argparse.ArgumentParser(add_help=False)
    config_option.add_argument("-c", "--config", type=Path, default=_default_config())
    add_keys_commands(commands.add_parser("keys", help="API keys for tenants"), config_option)
    usage = commands.add_parser("usage", help="usage from the ledger", parents=[config_option])
    add_usage_command(usage)
    render = with_sources(commands.add_parser("render", help="Kubernetes resources for the catalog"))
    render.add_argument(
        "-o", "--output", default="-", help="a directory (one file per object), or - for stdout"
    )
    render.add_argument(
        "--crossplane", action="store_true", help="also the XRD, the Composition and the Function packages"
    )
    render.add_argument("--group", default="sovra.dev", help="the XRD's API group (with --crossplane)")
    dashboards = commands.add_parser(
        "dashboards", help="the Grafana dashboard, for a Grafana on this machine"
    )
    dashboards.add_argument(
        "-o", "--output", default="-", help="a directory (dashboard + provisioning files), or - for stdout"
    )
    dashboards.add_argument(
        "--prometheus-url", default="http://127.0.0.1:9090", help="the data source the provisioning names"
    )
    function = commands.add_parser("function", help="the Crossplane composition function")
    function_commands = function.add_subparsers(dest="function_command", required=True)
    serve = function_commands.add_parser("serve", help="serve RunFunction over gRPC")
    serve.add_argument("--address", default="0.0.0.0:9443")
    serve.add_argument(
        "--tls-certs-dir",
        default=os.environ.get("TLS_SERVER_CERTS_DIR"),
        help="tls.crt, tls.key and ca.crt (Crossplane mounts them); else --insecure",
    )
    serve.add_argument("--insecure", action="store_true", help="serve without TLS (development only)")
    add_eval_command(
        commands.add_parser("eval", help="run a promptfoo-format suite", parents=[config_option])
    )
    add_status_command(
        commands.add_parser(
            "status", help="each service's state in the running gateway", parents=[config_option]
        )
    )
    for verb, what in (("load", "load a service now"), ("unload", "stop a service's replicas now")):
        add_status_command(commands.add_parser(verb, help=what, parents=[config_option]), name=True)
    router = commands.add_parser("router", help="the semantic router's classifiers")
    router_commands = router.add_subparsers(dest="router_command", required=True)
    train = router_commands.add_parser(
        "train", help="train the shipped classifiers (needs sovra[train])", parents=[config_option]
    )
    train.add_argument("--data", type=Path, default=Path("../shared/datasets/router"), help="router dataset")
    for flag, (default, what) in _OWN_DATA.items():
        train.add_argument(flag, type=Path, default=Path(default), help=f"{what} (data/router/README.md)")
    train.add_argument("--out", type=Path, help="where to write them (default: inside the package)")
    return parser


# The project's own training data for `sovra router train` (data/router/README.md): flag, default
# path, what it is.
_OWN_DATA = {
    "--questions": ("data/router/domain_questions.jsonl", "the project's own short domain questions"),
    "--guard-prompts": ("data/router/guard_prompts.jsonl", "the project's own short attacks and look-alikes"),
    "--frames": ("data/router/frames.jsonl", "the project's own frames a harmful request hides in"),
    "--harmful-requests": (
        "data/router/harmful_requests.jsonl", "the project's own harmful requests, put in the frames"
    ),
    "--markup-requests": (
        "data/router/markup_requests.jsonl", "the project's own benign requests about pasted markup"
    ),
}  # fmt: skip


def _default_config() -> Path | None:
    if "SOVRA_CONFIG" in os.environ:
        return Path(os.environ["SOVRA_CONFIG"])
    local = Path("sovra.yaml")
    return local if local.exists() else None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, getattr(args, "engine_logs", False))
    try:
        return _dispatch(args)
    except ConfigError as error:
        for problem in error.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    except SovraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from sovra.config import load_platform_config
    from sovra.runtime.engines import engine_binary
    from sovra.runtime.serve import build_gate
    from sovra.spec import load_catalog

    if args.command == "engines":
        config = load_platform_config(args.config)
        binary = engine_binary(config, rebuild=args.rebuild)
        print(binary.describe())
        if args.rebuild and (config.engines.llama_server or shutil.which("llama-server")):
            print(
                "note: `sovra up` runs the configured (or PATH) llama-server, not this build", file=sys.stderr
            )
        return 0
    if args.command == "keys":
        return run_keys_command(args, load_platform_config(args.config))
    if args.command == "usage":
        return run_usage_command(args, load_platform_config(args.config))
    if args.command == "eval":
        return run_eval_command(args, load_platform_config(args.config))
    if args.command in ("status", "load", "unload"):
        return run_status_command(args, load_platform_config(args.config))
    if args.command == "router":
        own = {flag: getattr(args, flag.removeprefix("--").replace("-", "_")) for flag in _OWN_DATA}
        return _train_router(args.data, own, args.out, load_platform_config(args.config))
    if args.command == "function":
        return _serve_function(args.address, args.tls_certs_dir, args.insecure)
    if args.command == "dashboards":
        return _dashboards(args.output, args.prometheus_url)
    overrides = {}
    if getattr(args, "host", None):
        overrides["listen.host"] = args.host
    if getattr(args, "port", None):
        overrides["listen.port"] = args.port
    config = load_platform_config(args.config, overrides=overrides)
    catalog = load_catalog(args.file, allow_empty=bool(config.providers))
    if args.command == "validate":
        build_gate(config, catalog)  # the routing policy resolves against the catalog
        print(f"ok: {len(catalog.services)} InferenceService(s): {', '.join(catalog.names)}")
        return 0
    if args.command == "preload":
        _preload(catalog, config)
        return 0
    if args.command == "plan":
        from sovra.cli.plan import print_plan

        return print_plan(catalog, config)
    if args.command == "render":
        build_gate(config, catalog)  # a policy that does not resolve fails here, not in the cluster
        return _render(catalog, config, args.output, args.group if args.crossplane else None)
    return _up(args, catalog, config)


def _dashboards(output: str, prometheus_url: str) -> int:
    from sovra.observe.dashboards import dashboard_json, write_local

    if output == "-":
        sys.stdout.write(dashboard_json())
        return 0
    try:
        written = write_local(Path(output), prometheus_url)
    except OSError as error:
        raise SovraError(f"{output}: cannot write the dashboard: {error.strerror or error}") from error
    for path in written:
        print(path)
    provisioning = (Path(output) / "provisioning").resolve()
    print(f"Grafana: GF_PATHS_PROVISIONING={provisioning} grafana-server (scrape the gateway's /metrics)")
    return 0


def _preload(catalog: Catalog, config: PlatformConfig) -> None:
    from sovra.runtime.engines import build_store, preload

    for name, path in preload(catalog, build_store(config), adapters=True).items():
        print(f"{name}: {path}")


def _up(args: argparse.Namespace, catalog: Catalog, config: PlatformConfig) -> int:
    from sovra.inference.drivers import HostFacts
    from sovra.runtime.auth import resolve_verifier
    from sovra.runtime.engines import build_store, plan_services, preload
    from sovra.runtime.serve import build_gate, run_platform

    auth = resolve_verifier(config, os.environ, open_access=args.no_auth)
    gate = build_gate(config, catalog)
    if config.engines.remote_url:  # the engines run elsewhere (Kubernetes): nothing to fetch or start
        return _run(run_platform(config, [], auth, gate, catalog))
    weights = preload(catalog, build_store(config))
    plans = plan_services(catalog, config, weights, HostFacts.probe())
    return _run(run_platform(config, plans, auth, gate, catalog, catalog_path=args.file))


def _render(catalog: Catalog, config: PlatformConfig, output: str, crossplane_group: str | None) -> int:
    from sovra.crossplane.composition import crossplane_objects
    from sovra.deploy.evals import eval_objects
    from sovra.deploy.render import render, to_yaml, write

    settings = config.render
    objects = render(catalog, settings, virtual_models=config.router.virtual_models)
    evals = config.evals
    objects += eval_objects(
        evals.suites, settings, evals.schedule, evals.regression_points, evals.stale_after_hours
    )
    if crossplane_group is not None:
        objects = crossplane_objects(settings.function_image, crossplane_group) + objects
    if output == "-":
        sys.stdout.write(to_yaml(objects))
    else:
        paths = write(objects, Path(output))
        print(f"{len(paths)} objects written to {output}", file=sys.stderr)
    return 0


def _serve_function(address: str, certs: str | None, insecure: bool) -> int:
    try:
        from crossplane.function import runtime

        from sovra.crossplane.function import SovraFunction
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SovraError(f"the function needs pip install 'sovra[crossplane]' ({exc})") from exc
    if certs is None and not insecure:
        raise SovraError("give --tls-certs-dir (or TLS_SERVER_CERTS_DIR), or --insecure for development")
    creds = runtime.load_credentials(certs) if certs else None
    runtime.serve(SovraFunction(), address, creds=creds, insecure=insecure)
    return 0


def _train_router(data: Path, own: dict[str, Path], out: Path | None, config: PlatformConfig) -> int:
    """`own`: the project's own data by its flag (_OWN_DATA)."""
    if not (data / "intent").is_dir() or not (data / "jailbreak").is_dir():
        raise ConfigError(
            [Problem(str(data), "", "not the router dataset (no intent/ and jailbreak/ folders)")]
        )
    for flag, (_, what) in _OWN_DATA.items():
        if not own[flag].is_file():
            raise ConfigError([Problem(str(own[flag]), "", f"no such file ({what}: {flag})")])
    try:
        from sovra.routing.train import ENCODER, MODELS, train
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise SovraError(f"training needs sovra[train]: pip install 'sovra[train]' ({exc})") from exc
    from sovra.runtime.engines import build_store
    from sovra.storage.refs import parse_ref

    store = build_store(config)  # the encoder comes through the weight store, like a model
    encoder = {part: store.ensure(parse_ref(uri)) for part, uri in ENCODER.items()}
    frames = (own["--frames"], own["--harmful-requests"])
    guard, markup = own["--guard-prompts"], own["--markup-requests"]
    manifest = train(data, encoder, own["--questions"], out or MODELS, guard, frames, markup)
    for name, entry in manifest["classifiers"].items():
        examples = sum(entry["examples"].values())
        print(f"{name}: {entry['file']} sha256 {entry['sha256'][:16]}… from {examples} examples")
    return 0


def _run(coroutine: object) -> int:
    import asyncio

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return int(asyncio.run(coroutine))  # type: ignore[arg-type]
    return int(uvloop.run(coroutine))  # type: ignore[arg-type]
