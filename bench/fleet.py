"""Several gateways, one ledger, under faults — proved on one machine with real parts.

Topology (network namespaces made here, each its own host; three bridges so that one gateway's path
to Redis or to PostgreSQL can be cut alone):

    clients ── HAProxy (health checks) ──┬── gw1 ─┐      front: the gateways, the engine
                                          ├── gw2 ─┼── redis   (its own PostgreSQL-free host)
                                          └── gw3 ─┴── db      (a PostgreSQL cluster of its own)
                            engine: a real llama-server with SmolLM2, reached by every gateway

Each gateway is a separate `sovra up` in gateway-only mode (`engines.remoteUrl`), with its own home
(its own ledger journal), the shared PostgreSQL ledger and the shared Redis limits. Tenants: `tpm`
has a tokens-per-minute limit, `budget` a tokens-per-minute limit and a daily budget, `free` none.
Clients stream and do not, through HAProxy, at a bounded concurrency.

Faults, and what each must do (the behaviour is the gateway's; this proves it):
- SIGKILL a gateway: HAProxy's health check takes it out; only requests in flight on it fail; what
  it had answered is in the ledger (its journal is replayed when it starts again); started again, it
  serves within seconds.
- Cut a gateway's network to Redis for 10 s (every packet dropped): its limits go local
  (`limits.whenRedisIsDown: local`) — no client sees an error — and come back to Redis by themselves.
  Bound: counting alone, that gateway goes on from the shared bucket's level it last saw, so a tenant
  gets beyond its limit at most that level (for a tenant at its limit, about one request) plus what
  refills during the cut.
- Cut a gateway's network to PostgreSQL for 10 s: answers go on; their rows wait in the journal and
  reach the database by themselves once it answers.
- Restart PostgreSQL: the same, for every gateway at once.
- Restart Redis (it keeps nothing on disk): the counters start again — a tenant's minute bucket is
  full again (up to one more `tpm`), its budget is re-read from the ledger; gateways that found it
  down meanwhile counted locally, as above.

Invariants checked, and printed with the figures: every response a client saw complete has exactly
one ledger row (by `x-request-id`, counted on both sides); no client error but for requests in flight
on the killed gateway; no tenant above its limits by more than the bounds above; each gateway back
without a restart (time from the fault's end until it counts in Redis again, or until its rows are
all in the database).

    sudo python bench/fleet.py [--workers 24] [--seconds 90]     (root: namespaces; installs HAProxy)
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from sovra.access.bounds import estimate_prompt

REPO = Path(__file__).resolve().parent.parent
OPERATOR = "sk-sovra-fleet-" + "0" * 16
NETS = {"front": "10.213.0", "redis": "10.214.0", "db": "10.215.0"}
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/lib/postgresql/15/bin"))
TPM = 900  # tokens per minute of the limited tenants
BUDGET = 1_500  # the `budget` tenant's daily tokens: reached within the run
CUT_SECONDS = 10.0


def sh(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=check, capture_output=True, text=True)


def missing() -> str | None:
    """Why this machine cannot run the proof, or None."""
    if os.geteuid() != 0:
        return "the fleet proof makes network namespaces: it needs root"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "the fleet proof needs iproute2 (ip, tc)"
    if shutil.which("redis-server") is None or not (PG_BIN / "postgres").exists():
        return "the fleet proof runs its own redis-server and PostgreSQL: install redis-server and postgresql"
    if shutil.which("haproxy") is None:
        return "the fleet proof needs Debian's haproxy (apt-get install haproxy)"
    probe = sh("ip", "netns", "add", f"sovprobe{os.getpid()}", check=False)
    if probe.returncode != 0:
        return f"network namespaces are not available here: {probe.stderr.strip()}"
    sh("ip", "netns", "del", f"sovprobe{os.getpid()}", check=False)
    return None


def install_haproxy() -> None:
    if shutil.which("haproxy") is None and shutil.which("apt-get") and os.geteuid() == 0:
        print("installing haproxy (Debian) ...", flush=True)
        sh("apt-get", "update", "-qq", check=False)
        sh("apt-get", "install", "-y", "-qq", "--no-install-recommends", "haproxy", check=False)


# ---- the network -------------------------------------------------------------------------------


@dataclass
class Host:
    name: str  # its network namespace
    octet: int
    nets: tuple[str, ...]

    def ip(self, net: str) -> str:
        return f"{NETS[net]}.{self.octet}"


class Network:
    """Bridges in the root namespace (where the harness and HAProxy run, at .1 of each), and one
    namespace per host with a veth on each of its networks."""

    def __init__(self) -> None:
        self.run = secrets.token_hex(2)
        self.hosts: dict[str, Host] = {}

    def _bridge(self, net: str) -> str:
        return f"b{self.run}{net[0]}"

    def up(self) -> None:
        for net, prefix in NETS.items():
            bridge = self._bridge(net)
            sh("ip", "link", "add", bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{prefix}.1/24", "dev", bridge)
            sh("ip", "link", "set", bridge, "up")

    def add(self, role: str, octet: int, nets: tuple[str, ...]) -> Host:
        host = Host(f"sov{self.run}-{role}", octet, nets)
        sh("ip", "netns", "add", host.name)
        sh("ip", "netns", "exec", host.name, "ip", "link", "set", "lo", "up")
        for net in nets:
            outside, inside = f"v{self.run}{octet}{net[0]}", f"{net}0"
            sh("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", host.name)
            sh("ip", "link", "set", outside, "master", self._bridge(net), "up")
            sh("ip", "netns", "exec", host.name, "ip", "addr", "add", f"{host.ip(net)}/24", "dev", inside)
            sh("ip", "netns", "exec", host.name, "ip", "link", "set", inside, "up")
        self.hosts[role] = host
        return host

    def cut(self, role: str, net: str) -> None:
        """Drop every packet the host sends on that network (a packet larger than the bucket never
        leaves): a partition, not a refused connection."""
        host = self.hosts[role]
        sh("ip", "netns", "exec", host.name, "tc", "qdisc", "add", "dev", f"{net}0", "root",
           "tbf", "rate", "8bit", "burst", "10", "limit", "1")  # fmt: skip

    def restore(self, role: str, net: str) -> None:
        sh("ip", "netns", "exec", self.hosts[role].name, "tc", "qdisc", "del", "dev", f"{net}0", "root")

    def down(self) -> None:
        for host in self.hosts.values():
            for pid in sh("ip", "netns", "pids", host.name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", host.name, check=False)
        for net in NETS:
            sh("ip", "link", "del", self._bridge(net), check=False)


# ---- the parts ---------------------------------------------------------------------------------


def _wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(Exception):
            if check():
                return time.monotonic() - started
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def _answers_sql(url: str) -> bool:
    with psycopg.connect(url, connect_timeout=1) as db:
        return db.execute("SELECT 1").fetchone() == (1,)


def _healthy(url: str) -> bool:
    return httpx.get(url, timeout=1).status_code == 200


@dataclass
class Fleet:
    network: Network
    work: Path
    llama_server: Path
    model: Path
    gateways: int = 3
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    lb_port: int = 0
    prefixes: dict[str, str] = field(default_factory=dict)  # request-id prefix → gateway
    probes: set[str] = field(default_factory=set)  # the harness's own requests (learning prefixes)
    tokens: dict[str, str] = field(default_factory=dict)  # tenant → its key's token

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@{self.network.hosts['db'].ip('db')}:5432/sovra"

    def _spawn(
        self, name: str, role: str | None, command: list[str], env: dict[str, str] | None = None
    ) -> None:
        prefix = ["ip", "netns", "exec", self.network.hosts[role].name] if role else []
        with (self.work / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(
                [*prefix, *command], stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )

    # PostgreSQL, a cluster of its own (the machine's is never touched)
    def start_postgres(self) -> None:
        data = self.work / "pg"
        if not data.exists():
            data.mkdir()
            shutil.chown(data, "postgres", "postgres")
            sh(
                "runuser",
                "-u",
                "postgres",
                "--",
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "--auth=trust",
                "-U",
                "postgres",
            )
            with (data / "pg_hba.conf").open("a") as hba:
                hba.write("host all all 0.0.0.0/0 trust\n")
        ip = self.network.hosts["db"].ip("db")
        self._spawn("postgres", "db", ["runuser", "-u", "postgres", "--", str(PG_BIN / "postgres"), "-D", str(data),
                                       "-c", f"listen_addresses={ip}", "-c", "port=5432", "-k", str(data)])  # fmt: skip
        _wait(
            lambda: _answers_sql(f"postgresql://postgres@{ip}:5432/postgres"),
            "PostgreSQL",
        )

    def stop_postgres(self) -> None:
        pid = int((self.work / "pg" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # fast shutdown: connections are closed, as on a restart
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.processes["postgres"].wait(30)

    def create_database(self) -> None:
        ip = self.network.hosts["db"].ip("db")
        with psycopg.connect(f"postgresql://postgres@{ip}:5432/postgres", autocommit=True) as db:
            db.execute("CREATE DATABASE sovra")

    # Redis, keeping nothing on disk
    def start_redis(self) -> None:
        ip = self.network.hosts["redis"].ip("redis")
        self._spawn("redis", "redis", ["redis-server", "--bind", ip, "--port", "6379", "--save", "",
                                       "--appendonly", "no", "--protected-mode", "no"])  # fmt: skip
        import redis

        def pong() -> bool:
            with redis.Redis(host=ip, socket_timeout=1) as client:
                return bool(client.ping())

        _wait(pong, "Redis")

    def kill_redis(self) -> None:
        self.processes["redis"].kill()
        self.processes["redis"].wait(10)

    # the engine
    def start_engine(self) -> None:
        ip = self.network.hosts["engine"].ip("front")
        self._spawn("engine", "engine", [str(self.llama_server), "--model", str(self.model), "--alias", "smollm2",
                                         "--host", ip, "--port", "8080", "--parallel", "4", "--ctx-size", "4096"])  # fmt: skip
        _wait(lambda: _healthy(f"http://{ip}:8080/health"), "llama-server")

    # the gateways
    def gateway_url(self, index: int) -> str:
        return f"http://{self.network.hosts[f'gw{index}'].ip('front')}:8000"

    def _gateway_config(self, index: int) -> Path:
        home = self.work / f"gw{index}"
        home.mkdir(exist_ok=True)
        config = home / "sovra.yaml"
        engine = self.network.hosts["engine"].ip("front")
        redis_ip = self.network.hosts["redis"].ip("redis")
        config.write_text(
            f"home: {home}\n"
            f"database: {{url: '{self.database_url}'}}\n"
            f"limits: {{redisUrl: 'redis://{redis_ip}:6379/0', whenRedisIsDown: local}}\n"
            f"engines: {{remoteUrl: 'http://{engine}:8080'}}\n"
        )
        return config

    def start_gateway(self, index: int, wait: bool = True) -> float:
        started = time.monotonic()
        host = self.network.hosts[f"gw{index}"]
        command = [sys.executable, "-m", "sovra", "up", "-f", str(REPO / "catalog" / "smollm2.yaml"),
                   "-c", str(self._gateway_config(index)), "--host", host.ip("front"), "--port", "8000"]  # fmt: skip
        self._spawn(f"gw{index}", f"gw{index}", command, {"SOVRA_API_KEY": OPERATOR})
        if wait:
            _wait(lambda: _healthy(f"{self.gateway_url(index)}/health"), f"gateway {index}")
            self.learn_prefix(index)
        return time.monotonic() - started

    def learn_prefix(self, index: int) -> None:
        """Which gateway answered a request: its ids start with its process's own prefix."""
        answer = httpx.post(f"{self.gateway_url(index)}/v1/chat/completions", timeout=30,
                            headers={"authorization": f"Bearer {OPERATOR}"},
                            json={"model": "smollm2", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        self.prefixes[answer.headers["x-request-id"][:16]] = f"gw{index}"
        self.probes.add(answer.headers["x-request-id"])

    def kill_gateway(self, index: int) -> None:
        self.processes[f"gw{index}"].send_signal(signal.SIGKILL)
        self.processes[f"gw{index}"].wait(10)

    # HAProxy in front, checking each gateway's /health twice a second
    def start_haproxy(self) -> None:
        from sovra.inference.launcher import free_port

        self.lb_port = free_port()
        servers = "\n".join(
            f"  server gw{i} {self.network.hosts[f'gw{i}'].ip('front')}:8000 check inter 500ms fall 2 rise 2"
            for i in range(1, self.gateways + 1)
        )
        config = self.work / "haproxy.cfg"
        config.write_text(
            "global\n  maxconn 2048\n  log stdout format raw local0\n"
            "defaults\n  mode http\n  log global\n  timeout connect 1s\n  timeout client 120s\n  timeout server 120s\n"
            # One line per request: the client's id, the gateway it went to, status, how it ended.
            '  log-format "%[capture.req.hdr(0)] %s %ST %tsc"\n'
            # A connection refused (a dead gateway) is tried on another: the request never left.
            "  retries 3\n  option redispatch\n  retry-on conn-failure\n"
            # A connection to a gateway per request: no client connection stays tied to a gateway
            # between its requests, so a gateway's death touches only what it was answering.
            "  option http-server-close\n"
            f"frontend clients\n  bind 127.0.0.1:{self.lb_port}\n  http-request capture req.hdr(x-client-id) len 32\n"
            "  default_backend gateways\n"
            "backend gateways\n  balance leastconn\n  option httpchk GET /health\n  http-check expect status 200\n"
            f"{servers}\n"
        )
        self._spawn("haproxy", None, ["haproxy", "-db", "-f", str(config)])
        _wait(lambda: _healthy(f"http://127.0.0.1:{self.lb_port}/health"), "HAProxy")

    def create_keys(self) -> None:
        config = self.work / "keys.yaml"
        config.write_text(f"home: {self.work}\ndatabase: {{url: '{self.database_url}'}}\n")
        limits = {
            "tpm": ["--tpm", str(TPM)],
            "budget": ["--tpm", str(TPM), "--budget", str(BUDGET), "--period", "day"],
            "free": [],
        }
        for tenant, flags in limits.items():
            out = sh(
                sys.executable, "-m", "sovra", "keys", "create", "-c", str(config), "--tenant", tenant, *flags
            )
            self.tokens[tenant] = out.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        self.network.up()
        self.network.add("db", 10, ("db",))
        self.network.add("redis", 11, ("redis",))
        self.network.add("engine", 12, ("front",))
        for index in range(1, self.gateways + 1):
            self.network.add(f"gw{index}", 20 + index, ("front", "redis", "db"))
        self.start_postgres()
        self.create_database()
        self.start_redis()
        self.start_engine()
        self.create_keys()  # before the gateways: they read the keys when they start
        self.start_gateway(1)  # the first migrates the database; the others start together
        for index in range(2, self.gateways + 1):
            self.start_gateway(index, wait=False)
        for index in range(2, self.gateways + 1):
            _wait(lambda i=index: _healthy(f"{self.gateway_url(i)}/health"), f"gateway {index}")  # type: ignore[misc]
            self.learn_prefix(index)
        self.start_haproxy()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(15)
        self.network.down()

    def rows(self) -> dict[str, tuple[str, float, int, int]]:
        """request id → (tenant, at, tokens, status) for every ledger row."""
        with psycopg.connect(self.database_url, connect_timeout=5) as db:
            found = db.execute(
                "SELECT request_id, tenant, at, input_tokens + output_tokens, status FROM usage"
            ).fetchall()
        return {r[0]: (r[1], r[2], r[3], r[4]) for r in found}

    def routes(self) -> dict[str, str]:
        """client id → the gateway HAProxy sent that request to (its log, one line per request)."""
        found = {}
        for line in (self.work / "haproxy.log").read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 4:
                found[parts[0]] = parts[1]
        return found

    def log_times(self, gateway: str, message: str) -> list[float]:
        """When a gateway logged `message` (its logfmt lines' ts), as epoch seconds."""
        stamps = []
        for line in (self.work / f"{gateway}.log").read_text(errors="replace").splitlines():
            if f'msg="{message}' in line or f"msg={message}" in line:
                stamp = re.match(r"ts=(\S+)Z", line)
                if stamp:
                    seconds = calendar.timegm(time.strptime(stamp.group(1)[:19], "%Y-%m-%dT%H:%M:%S"))
                    stamps.append(seconds + float("0" + stamp.group(1)[19:]))
        return stamps


@contextlib.contextmanager
def fleet(work: Path, llama_server: Path, model: Path) -> Iterator[Fleet]:
    running = Fleet(Network(), work, llama_server, model)
    try:
        running.start()
        yield running
    finally:
        running.stop()


# ---- the load ----------------------------------------------------------------------------------


@dataclass
class Call:
    tenant: str
    stream: bool
    start: float
    end: float = 0.0
    status: int = 0  # 0: no HTTP answer (connection reset)
    code: str = ""
    request_id: str = ""
    complete: bool = False
    client_id: str = field(default_factory=lambda: secrets.token_hex(8))  # in HAProxy's log too

    @property
    def refused(self) -> bool:  # a limit said no: the answer the client should get
        return self.status == 429


MAX_TOKENS = 12
REQUEST = {"model": "smollm2", "max_tokens": MAX_TOKENS, "stream": False,
           "messages": [{"role": "user", "content": "Count to 5, briefly."}]}  # fmt: skip


async def _one(client: httpx.AsyncClient, token: str, call: Call) -> None:
    body = {**REQUEST, "stream": call.stream}
    headers = {"authorization": f"Bearer {token}", "x-client-id": call.client_id}
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
            call.status, call.request_id = response.status_code, response.headers.get("x-request-id", "")
            text = ""
            async for chunk in response.aiter_text():
                text += chunk
            if response.status_code != 200:
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    call.code = json.loads(text)["error"]["code"]
            elif call.stream:
                call.complete = "data: [DONE]" in text
            else:
                with contextlib.suppress(ValueError, KeyError):
                    call.complete = bool(json.loads(text)["choices"])
    except httpx.HTTPError as error:
        call.code = type(error).__name__
    call.end = time.time()


async def load(fleet: Fleet, workers: int, seconds: float, calls: list[Call]) -> None:
    tenants = list(fleet.tokens)
    deadline = time.time() + seconds
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{fleet.lb_port}", timeout=60, limits=limits
    ) as client:

        async def worker(number: int) -> None:
            tenant = tenants[number % len(tenants)]
            turn = 0
            while time.time() < deadline:
                call = Call(tenant, stream=(number + turn) % 2 == 0, start=time.time())
                calls.append(call)
                await _one(client, fleet.tokens[tenant], call)
                if call.refused:
                    await asyncio.sleep(0.5)  # a polite client backs off a little
                turn += 1

        await asyncio.gather(*(worker(n) for n in range(workers)))


# ---- faults and the report -----------------------------------------------------------------------


@dataclass
class Faults:
    kill_at: float = 0.0
    rejoin_s: float = 0.0
    redis_cut: tuple[float, float] = (0.0, 0.0)
    db_cut: tuple[float, float] = (0.0, 0.0)
    postgres_restart: tuple[float, float] = (0.0, 0.0)
    redis_restart: float = 0.0
    watchers: list[asyncio.Task[float]] = field(default_factory=list)  # ledger catch-up after db faults
    caught_up: list[float] = field(default_factory=list)


async def _rows_caught_up(
    fleet: Fleet, calls: list[Call], gateways: set[str], window: tuple[float, float]
) -> float:
    """Seconds from the fault's end until every answer these gateways completed during it has its
    row in the ledger, polled while the load goes on."""
    while True:
        wanted = {c.request_id for c in calls if c.complete and window[0] <= c.end <= window[1]
                  and fleet.prefixes.get(c.request_id[:16]) in gateways}  # fmt: skip
        with contextlib.suppress(psycopg.Error):
            if wanted <= (await asyncio.to_thread(fleet.rows)).keys():
                return time.time() - window[1]
        if time.time() - window[1] > 90:
            return float("inf")
        await asyncio.sleep(0.25)


async def partition(fleet: Fleet, role: str, net: str) -> tuple[float, float]:
    """Cut `role` from `net` for CUT_SECONDS; when the cut began and ended."""
    start = time.time()
    await asyncio.to_thread(fleet.network.cut, role, net)
    await asyncio.sleep(CUT_SECONDS)
    await asyncio.to_thread(fleet.network.restore, role, net)
    return start, time.time()


async def inject(fleet: Fleet, seconds: float, faults: Faults, calls: list[Call]) -> None:
    """The schedule, as fractions of the run: kill gw1, start it again; cut gw2 from Redis; cut gw3
    from PostgreSQL; restart PostgreSQL; restart Redis."""
    begin = time.time()

    async def at(fraction: float) -> None:
        await asyncio.sleep(max(0.0, begin + fraction * seconds - time.time()))

    await at(0.08)
    faults.kill_at = time.time()
    await asyncio.to_thread(fleet.kill_gateway, 1)
    await asyncio.sleep(3)
    faults.rejoin_s = await asyncio.to_thread(fleet.start_gateway, 1)
    await at(0.25)
    faults.redis_cut = await partition(fleet, "gw2", "redis")
    await at(0.45)
    faults.db_cut = await partition(fleet, "gw3", "db")
    faults.watchers.append(asyncio.create_task(_rows_caught_up(fleet, calls, {"gw3"}, faults.db_cut)))
    await at(0.65)
    start = time.time()
    await asyncio.to_thread(fleet.stop_postgres)
    await asyncio.to_thread(fleet.start_postgres)
    faults.postgres_restart = (start, time.time())
    everyone = {"gw1", "gw2", "gw3"}
    faults.watchers.append(
        asyncio.create_task(_rows_caught_up(fleet, calls, everyone, faults.postgres_restart))
    )
    await at(0.8)
    faults.redis_restart = time.time()
    await asyncio.to_thread(fleet.kill_redis)
    await asyncio.to_thread(fleet.start_redis)


def tpm_overshoot(events: list[tuple[float, int]], tpm: int) -> float:
    """The most a tenant got beyond its token bucket over any interval: tokens admitted in [t1, t2]
    minus what a bucket of `tpm` (full at t1) allows, max over every pair of admissions."""
    events.sort()
    worst = 0.0
    for i, (first, _) in enumerate(events):
        total = 0
        for when, tokens in events[i:]:
            total += tokens
            worst = max(worst, total - tpm - tpm * (when - first) / 60)
    return worst


def tpm_bound(fleet: Fleet, faults: Faults) -> float:
    """The documented bound, in multiples of `tpm`, beyond the tenant's own bucket: one full bucket
    per Redis restart, and per gateway that counted locally meanwhile the shared bucket's level it
    last saw (for these tenants, kept at their limit, at most one request's reservation) plus what
    refills while it counted alone (the outage, and the 2 s before it tries Redis again)."""
    reservation = (estimate_prompt(REQUEST, json.dumps(REQUEST).encode()) + MAX_TOKENS) / TPM
    episodes = [faults.redis_cut[1] - faults.redis_cut[0] + 2]
    for gateway in ("gw1", "gw2", "gw3"):  # which gateways noticed the restart, and for how long
        down = [
            t
            for t in fleet.log_times(gateway, "Redis unreachable for limits")
            if t >= faults.redis_restart - 1
        ]
        back = [
            t for t in fleet.log_times(gateway, "Redis reachable again for limits") if down and t >= down[0]
        ]
        if down:
            episodes.append((back[0] if back else time.time()) - down[0] + 2)
    return 1 + sum(reservation + seconds / 60 for seconds in episodes)


@dataclass
class Report:
    requests: int
    completed: int
    refused: int
    errors: list[Call]
    errors_allowed: int  # in flight on the killed gateway
    rows_expected: int
    rows_found: int
    rows_extra: int  # rows for answers no client saw complete (the killed gateway's, replayed)
    overshoot: dict[str, float]
    budget_used: int
    bound_tpm: float
    recovery: dict[str, float]
    ok: bool = False
    problems: list[str] = field(default_factory=list)


def settle_rows(
    fleet: Fleet, wanted: set[str], timeout: float = 60.0
) -> dict[str, tuple[str, float, int, int]]:
    """The ledger once every wanted row is in it (or the timeout has passed)."""
    started = time.monotonic()
    while True:
        rows = fleet.rows()
        if wanted <= rows.keys() or time.monotonic() - started > timeout:
            return rows
        time.sleep(0.5)


def report(fleet: Fleet, calls: list[Call], faults: Faults) -> Report:
    complete = {c.request_id: c for c in calls if c.complete and c.request_id}
    rows = settle_rows(fleet, set(complete))
    errors = [c for c in calls if not c.complete and not c.refused]
    routes = fleet.routes()
    # In flight on the killed gateway: under way when it died, and not answered by another. HAProxy
    # logs each request it answered with the gateway that did; those cut by the kill it does not
    # always log (it cannot say which gateway), so "not answered elsewhere" is the test.
    alive = {"gw2", "gw3"}
    in_flight_at_kill = [c for c in calls if c.start <= faults.kill_at + 1 and c.end >= faults.kill_at
                         and routes.get(c.client_id) not in alive]  # fmt: skip
    problems = [f"{c.status} {c.code} at +{c.start - faults.kill_at:.1f} s (sent to {routes.get(c.client_id, '?')}, client {c.client_id})"
                for c in errors if c not in in_flight_at_kill]  # fmt: skip
    found = [rid for rid in complete if rid in rows]
    if len(found) != len(complete):
        problems.append(f"{len(complete) - len(found)} complete answers without a ledger row")
    killed = tuple(p for p, g in fleet.prefixes.items() if g == "gw1")
    unseen = [
        rid for rid, row in rows.items() if row[3] == 200 and rid not in complete and rid not in fleet.probes
    ]
    extra = [rid for rid in unseen if not rid.startswith(killed)]
    extra_killed = [rid for rid in unseen if rid.startswith(killed)]
    if extra:
        problems.append(
            f"{len(extra)} rows of 200 answers that no client saw complete (not the killed gateway's)"
        )
    overshoot = {}
    for tenant in ("tpm", "budget"):
        events = [(row[1], row[2]) for row in rows.values() if row[0] == tenant]
        overshoot[tenant] = tpm_overshoot(events, TPM) / TPM
    budget_used = sum(row[2] for row in rows.values() if row[0] == "budget")
    bound = tpm_bound(fleet, faults)
    for tenant, ratio in overshoot.items():
        if ratio > bound:
            problems.append(f"tenant {tenant} {ratio:.2f} x tpm beyond its bucket (bound {bound:.2f})")
    # The budget: what the fault episodes let through beyond the buckets, and no more.
    if budget_used > BUDGET + (bound - 1) * TPM:
        problems.append(f"budget: {budget_used} tokens used of {BUDGET} (bound +{(bound - 1) * TPM:.0f})")
    if not any(c.code == "budget_exceeded" for c in calls):
        problems.append("the budget was never reached: the run proves nothing about it")
    recovery = recovery_times(fleet, faults)
    for name, seconds in recovery.items():
        if seconds == float("inf"):
            problems.append(f"{name}: did not recover")
    return Report(
        requests=len(calls), completed=len(complete), refused=sum(c.refused for c in calls), errors=errors,
        errors_allowed=len(in_flight_at_kill), rows_expected=len(complete), rows_found=len(found),
        rows_extra=len(extra_killed), overshoot=overshoot, budget_used=budget_used, bound_tpm=bound,
        recovery=recovery, ok=not problems, problems=problems,
    )  # fmt: skip


def recovery_times(fleet: Fleet, faults: Faults) -> dict[str, float]:
    def after(gateway: str, message: str, since: float) -> float:
        later = [t - since for t in fleet.log_times(gateway, message) if t >= since - 1]
        return max(min(later), 0.0) if later else float("inf")

    reachable = "Redis reachable again for limits"
    times = {
        "killed gateway serving again after its start (s)": faults.rejoin_s,
        "cut from Redis: counting in Redis again (s)": after("gw2", reachable, faults.redis_cut[1]),
        "cut from PostgreSQL: its rows all in the ledger (s)": faults.caught_up[0],
        "PostgreSQL restarted: every row in the ledger (s)": faults.caught_up[1],
    }
    noticed = [after(g, reachable, faults.redis_restart) for g in ("gw1", "gw2", "gw3")]
    times["Redis restarted: every gateway counting there again (s)"] = max(
        [t for t in noticed if t != float("inf")] or [0.0]
    )
    return times


def print_report(result: Report, calls: list[Call], workers: int, seconds: float) -> None:
    streamed = sum(c.stream for c in calls)
    print(f"requests: {result.requests} ({streamed} streamed) from {workers} clients over {seconds:.0f} s, "
          f"3 tenants; {result.completed} complete, {result.refused} refused by limits (429)")  # fmt: skip
    print("faults: SIGKILL gw1 (started again 3 s later); gw2 cut from Redis 10 s; gw3 cut from PostgreSQL 10 s; "
          "PostgreSQL restarted; Redis restarted")  # fmt: skip
    print(f"ledger rows for complete answers: expected {result.rows_expected}, found {result.rows_found}; "
          f"rows of the killed gateway's answers its clients lost: {result.rows_extra}")  # fmt: skip
    print(
        f"client errors: {len(result.errors)} (allowed: requests in flight at the kill, {result.errors_allowed})"
    )
    for tenant, ratio in result.overshoot.items():
        print(
            f"tenant {tenant}: beyond its {TPM}-token bucket at most {ratio:.2f} x tpm (bound {result.bound_tpm:.2f})"
        )
    refusals = sum(c.code == "budget_exceeded" for c in calls)
    print(f"tenant budget: {result.budget_used} tokens used of a {BUDGET}-token budget "
          f"(bound +{(result.bound_tpm - 1) * TPM:.0f}); {refusals} answers budget_exceeded")  # fmt: skip
    for name, value in result.recovery.items():
        print(f"recovery — {name}: {value:.1f}")
    latency = [c.end - c.start for c in calls if c.complete]
    if latency:
        print(f"latency of complete answers: median {statistics.median(latency) * 1000:.0f} ms, "
              f"p95 {sorted(latency)[int(len(latency) * 0.95)] * 1000:.0f} ms")  # fmt: skip
    print("PASS" if result.ok else "FAIL:\n  " + "\n  ".join(result.problems))


async def prove(fleet: Fleet, workers: int, seconds: float) -> tuple[Report, list[Call]]:
    faults, calls = Faults(), list[Call]()
    await asyncio.gather(load(fleet, workers, seconds, calls), inject(fleet, seconds, faults, calls))
    faults.caught_up = list(await asyncio.gather(*faults.watchers))
    return await asyncio.to_thread(report, fleet, calls, faults), calls


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=90)
    parser.add_argument("--keep", type=Path, help="copy the logs (gateways, HAProxy, engine) here")
    args = parser.parse_args()
    install_haproxy()
    if reason := missing():
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    from sovra.config import load_platform_config
    from sovra.runtime.engines import build_store, engine_binary, preload
    from sovra.spec import load_catalog

    config = load_platform_config(None)
    model = preload(load_catalog(REPO / "catalog" / "smollm2.yaml"), build_store(config))["smollm2"]
    with tempfile.TemporaryDirectory(prefix="sovra-fleet-") as work:
        Path(work).chmod(0o755)  # PostgreSQL runs as its own user under it
        with fleet(Path(work), engine_binary(config).path, model) as running:
            result, calls = asyncio.run(prove(running, args.workers, args.seconds))
            print_report(result, calls, args.workers, args.seconds)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for log in Path(work).glob("*.log"):
                shutil.copy(log, args.keep / log.name)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
