"""`sovra up`'s listening socket against idle, slow and greedy clients (real sockets, loopback)."""

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import TOKEN, RunningPlatform, start_platform, stop_platform

CONFIG = """
providers:
  - {name: acme, baseUrl: 'http://127.0.0.1:9/v1', models: {fast: acme-2}}
gateway:
  connections: {headerSeconds: 1, bodySeconds: 1, idleSeconds: 1, maxPerClient: 20}
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    tmp = tmp_path_factory.mktemp("connections")
    catalog = tmp / "catalog"
    catalog.mkdir()  # the gateway alone, in front of a provider: no engine needed
    running = start_platform(tmp, catalog=catalog, config_text=CONFIG)
    yield running
    stop_platform(running)


def connect(platform: RunningPlatform) -> socket.socket:
    port = int(platform.base_url.rsplit(":", 1)[1])
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes the connection within `within` seconds (whatever it sent first)."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
    return False


def test_idle_connections_are_closed(gateway: RunningPlatform) -> None:
    socks = [connect(gateway) for _ in range(15)]
    started = time.monotonic()
    assert all(closed_by_server(s, within=5) for s in socks)
    assert time.monotonic() - started < 4  # headerSeconds: 1
    for s in socks:
        s.close()


def test_a_slowloris_head_is_cut_off(gateway: RunningPlatform) -> None:
    sock = connect(gateway)
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    closed = False
    for _ in range(20):  # a header byte every 0.2 s: never a complete head
        try:
            sock.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
        if closed_by_server(sock, within=0.2):
            closed = True
            break
    assert closed and time.monotonic() - started < 3
    sock.close()


def test_a_body_that_never_ends_is_cut_off(gateway: RunningPlatform) -> None:
    sock = connect(gateway)
    head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    sock.sendall(head.encode() + b"Content-Length: 1000\r\n\r\n{")  # the gateway waits for the rest
    assert closed_by_server(sock, within=4)
    sock.close()


def test_one_client_cannot_hold_every_connection_and_others_still_get_in(gateway: RunningPlatform) -> None:
    socks = [connect(gateway) for _ in range(30)]
    time.sleep(0.2)
    refused = sum(closed_by_server(s, within=0.3) for s in socks)
    assert refused >= 10  # maxPerClient: 20
    answer = httpx.get(f"{gateway.base_url}/health", timeout=5)  # once they are closed, room again
    for s in socks:
        s.close()
    time.sleep(0.2)
    models = httpx.get(
        f"{gateway.base_url}/v1/models", headers={"authorization": f"Bearer {TOKEN}"}, timeout=5
    )
    assert models.status_code == 200 and answer.status_code in (200, 503)


def test_a_keep_alive_connection_serves_several_requests_then_idles_out(gateway: RunningPlatform) -> None:
    with httpx.Client(base_url=gateway.base_url, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        for _ in range(3):
            assert client.get("/v1/models").status_code == 200
            time.sleep(0.3)  # within idleSeconds: the same connection is reused
