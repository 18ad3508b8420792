"""A scripted stand-in for llama-server, named as such: it answers /health and /completion the way
llama-server does, so the build logic can be tested without a 6-minute build. The proof run itself
is real: it starts this process, waits for /health and decodes through /completion."""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HEALTHY_PROBES = int(os.environ.get("STAND_IN_HEALTHY_PROBES", "1000000"))  # then /health says 503
probes = 0


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        global probes
        probes += 1
        healthy = self.path == "/health" and probes <= HEALTHY_PROBES
        self._send(200 if healthy else 503, {"status": "ok" if healthy else "busy"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(200, {"content": " Paris", "tokens_predicted": body["n_predict"], "stop": True})

    def _send(self, status: int, payload: dict[str, object]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    if "--version" in sys.argv:
        print("version: 1 (stand-in)")
        sys.exit(0)
    port = int(sys.argv[sys.argv.index("--port") + 1])
    print("stand-in engine listening", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
