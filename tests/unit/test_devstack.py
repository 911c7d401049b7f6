"""The embedded stack's Airflow settings that shorten a training run's fixed costs.

What they save is measured by benchmarks/training_wall_time.py (README, *Benchmarks*).
"""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator

import pytest

from trainyard_dev.devstack import Stack
from trainyard_dev.services import Ports, http_answers


@pytest.fixture
def server() -> Iterator[str]:
    """A real HTTP server on loopback that answers every GET with 404."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_an_answer_with_an_error_status_still_counts_as_an_answer(server: str) -> None:
    """Warming the execution API needs one request served, whatever its status."""
    assert http_answers(f"{server}/execution/health")


def test_nothing_listening_is_no_answer() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not http_answers(f"http://127.0.0.1:{port}/execution/health")


def test_the_embedded_scheduler_sleeps_less_than_airflows_default_when_idle(tmp_path) -> None:
    """Airflow's 1 s idle sleep delays each downstream task by up to a second."""
    env = Stack(state_dir=tmp_path, ports=Ports.free()).airflow_env()
    assert float(env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"]) < 1.0
