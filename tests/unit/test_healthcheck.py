"""`mixpilot healthcheck ROLE` (the containers' HEALTHCHECK) against real servers: a stage's
gRPC health and the gateway's /readyz."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from gateway.cli import main
from gateway.healthcheck import check
from services.common.grpc_server import create_server, set_serving
from services.common.settings import load_settings
from tests.infra import free_port


def test_a_stage_is_healthy_only_while_serving() -> None:
    port = free_port()
    settings = load_settings(renderer_port=port)
    assert "UNAVAILABLE" in (check("renderer", settings, timeout_s=1) or "")  # nothing there
    server, _, health = create_server(f"127.0.0.1:{port}", lambda s: None)
    server.start()
    try:
        assert check("renderer", settings) == f"127.0.0.1:{port}: NOT_SERVING"
        set_serving(health, [], True)
        assert check("renderer", settings) is None
    finally:
        server.stop(0)
    assert "unknown role" in (check("mixer", settings) or "")


class _Ready(BaseHTTPRequestHandler):
    ready = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/readyz" and self.ready else 503)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def test_the_gateway_is_healthy_when_ready(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        monkeypatch.setenv("MIXPILOT_GATEWAY_PORT", str(port))
        assert main(["healthcheck", "gateway"]) == 0
        _Ready.ready = False
        assert main(["healthcheck", "gateway"]) == 1
    finally:
        _Ready.ready = True
        server.shutdown()
