"""The console's files and reports through the real gateway app (a scripted upstream)."""

import pytest

from tests.access.test_gateway import AUTH, ScriptedUpstream, client, replica, served

pytestmark = pytest.mark.anyio


async def test_the_console_is_served_with_its_own_origin_only(upstream: ScriptedUpstream) -> None:
    async with client(upstream, {"m": served("m", [replica(1001)])}) as http:
        page = await http.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["content-security-policy"] == "default-src 'self'; frame-ancestors 'none'"
        assert '<script src="/ui/console.js"' in page.text and "/ui/console.css" in page.text
        script, style = await http.get("/ui/console.js"), await http.get("/ui/console.css")
        assert "text/javascript" in script.headers["content-type"] and "/v1/status" in script.text
        assert "text/css" in style.headers["content-type"]
        assert (await http.get("/v1/status/reports")).status_code == 401
        reports = (await http.get("/v1/status/reports?hours=nonsense", headers=AUTH)).json()
        assert reports["hours"] == 24 and reports["router"] == []  # no database here: no usage key
        status = (await http.get("/v1/status", headers=AUTH)).json()["services"]["m"]
        assert status["state"] == "remote" and status["in_flight"] == 0


async def test_load_and_unload_need_a_local_service(upstream: ScriptedUpstream) -> None:
    async with client(upstream, {"m": served("m", [replica(1001)])}) as http:
        answer = await http.post("/v1/status/m/load", headers=AUTH)
        assert answer.status_code == 404 and "runs on this machine" in answer.json()["error"]["message"]


def test_the_cli_prints_the_status_table(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from sovra.cli import main

    status = {"services": {"m": {"state": "ready", "in_flight": 2, "held": 0, "idle_seconds": 1.5,
              "unloads_in_seconds": 58.5, "replicas": [{"index": 0, "state": "ready", "port": 9001,
              "failure": None}, {"index": 1, "state": "failed", "port": None, "failure": "exit 1"}]}}}  # fmt: skip

    class Gateway(BaseHTTPRequestHandler):
        def _answer(self, code: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._answer(200, status)

        def do_POST(self) -> None:
            if self.path.endswith("/nope/load"):
                self._answer(404, {"error": {"message": "no service 'nope' runs on this machine"}})
            else:
                self._answer(200, {"service": "m", "state": "unloaded"})

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        assert main(["status", "--url", url]) == 0
        out = capsys.readouterr().out
        assert "#0 ready :9001" in out and "unloads in 58.5 s" in out and "#1: exit 1" in out
        assert main(["status", "--url", url, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["m"]["in_flight"] == 2
        assert main(["unload", "m", "--url", url]) == 0 and "m: unloaded" in capsys.readouterr().out
        assert main(["load", "nope", "--url", url]) == 1
        assert "404 no service 'nope' runs on this machine" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()
    assert main(["status", "--url", url]) == 1 and "is `sovra up` running?" in capsys.readouterr().err
