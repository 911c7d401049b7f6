"""Fault injection for tests and benchmarks: a TCP proxy in front of a real S3 or MLflow server.

Clients are pointed at the proxy instead of the server; the proxy then forwards (``pass``),
refuses connections like a stopped server (``refuse``: nothing listens on its port), or accepts
them and never answers like a hung one (``hang``). :meth:`FaultProxy.drop_requests` breaks only
the requests whose first line contains a given text (after letting some through): a server that
dies between two calls of one step; :meth:`FaultProxy.delay_requests` holds such requests back
(to make concurrent calls race). :func:`write_static_pipeline` gives a test a pipeline and a
registered model of its own.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml

from tests.support import REPO

Mode = Literal["pass", "refuse", "hang"]

#: Client bounds while a fault is on, so that fault tests stay quick: 2 s, one retry (the
#: shipped defaults are 30 s and two retries; the test session sets longer ones, see conftest).
FAST_FAILURES = {
    "TRAINYARD_SERVICE_TIMEOUT": "2",
    "TRAINYARD_SERVICE_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "2",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
}


class FaultProxy:
    """A loopback TCP proxy to ``upstream_url`` whose behaviour can be switched at any time."""

    def __init__(self, upstream_url: str) -> None:
        parts = urlsplit(upstream_url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._scheme = parts.scheme
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.mode: Mode = "pass"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._drop: tuple[bytes, int] | None = None
        self._delay: tuple[bytes, float] | None = None
        self.dropped = 0
        self.set_mode("pass")

    @property
    def url(self) -> str:
        """The proxy's address, to give clients instead of the server's."""
        return urlunsplit((self._scheme, f"127.0.0.1:{self.port}", "", "", ""))

    def set_mode(self, mode: Mode) -> None:
        """Forward, refuse or hang from now on; open connections are cut (clients reconnect)."""
        with self._lock:
            self.mode = mode
            for connection in list(self._connections):
                _close(connection)
            self._connections.clear()
            if mode == "refuse":
                if self._listener is not None:
                    _close(self._listener)
                    self._listener = None
            elif self._listener is None:
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                listener.listen(64)
                self._listener = listener
                threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def drop_requests(self, fragment: str, after: int = 0) -> None:
        """Cut the connection of every request whose first line contains ``fragment``.

        Args:
            fragment: Text of the request line, e.g. ``"registered-models/alias"``.
            after: How many such requests pass before the dropping starts.
        """
        with self._lock:
            self._drop = (fragment.encode(), after)

    def delay_requests(self, fragment: str, seconds: float) -> None:
        """Hold every request whose first line contains ``fragment`` for ``seconds``, then send it.

        Widens a race: calls made at once reach the server only after all have started.
        """
        with self._lock:
            self._delay = (fragment.encode(), seconds)

    def stop_dropping(self) -> None:
        """Let every request through again, undelayed."""
        with self._lock:
            self._drop = None
            self._delay = None

    @contextmanager
    def fault(self, mode: Mode) -> Iterator[FaultProxy]:
        """Switch to ``mode`` for the ``with`` block, then back to ``pass``."""
        self.set_mode(mode)
        try:
            yield self
        finally:
            self.set_mode("pass")

    def close(self) -> None:
        """Stop listening and cut every connection."""
        self.set_mode("refuse")

    # ---- plumbing ------------------------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    return
                self._connections.add(client)
                mode = self.mode
            if mode == "hang":
                continue  # accepted, never answered, until set_mode cuts it
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self._upstream, timeout=10)
        except OSError:
            _close(client)
            return
        server.settimeout(None)
        with self._lock:
            self._connections.add(server)
        threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()
        self._pipe(client, server, True)

    def _pipe(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if requests and self._should_drop(chunk):
                    break
                if requests:
                    time.sleep(self._delay_of(chunk))
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            _close(source)
            _close(target)

    def _should_drop(self, chunk: bytes) -> bool:
        with self._lock:
            if self._drop is None:
                return False
            fragment, after = self._drop
            first_line = chunk.split(b"\r\n", 1)[0]
            if fragment not in first_line:
                return False
            if after > 0:
                self._drop = (fragment, after - 1)
                return False
            self.dropped += 1
            return True

    def _delay_of(self, chunk: bytes) -> float:
        with self._lock:
            if self._delay is None:
                return 0.0
            fragment, seconds = self._delay
            return seconds if fragment in chunk.split(b"\r\n", 1)[0] else 0.0


def _close(sock: socket.socket) -> None:
    with suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@contextmanager
def fast_failures() -> Iterator[None]:
    """Short S3 and MLflow client bounds (:data:`FAST_FAILURES`) inside the block only."""
    saved = {name: os.environ.get(name) for name in FAST_FAILURES}
    os.environ.update(FAST_FAILURES)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def write_static_pipeline(root: Path, name: str, **sections: dict[str, Any]) -> Path:
    """A pipeline ``name`` (registered as ``name``) reading the bundled breast-cancer data.

    Fault tests use it: it needs no raw partitions, trains in a second, and its registry entries
    are its own. Point ``TRAINYARD_PIPELINES_DIR`` at the returned folder.

    Args:
        root: A folder of the test's own.
        name: The pipeline's and the registered model's name.
        sections: Fields to change per spec section, e.g. ``model={"params": {"C": 0.5}}``.

    Returns:
        The pipelines folder.
    """
    spec = yaml.safe_load((REPO / "include" / "pipelines" / "breast_cancer.yaml").read_text())
    spec["name"] = name
    spec["schedule"] = None
    spec["model"]["registered_name"] = name
    for section, fields in sections.items():
        spec[section] = {**spec.get(section, {}), **fields}
    folder = root / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec))
    return folder
