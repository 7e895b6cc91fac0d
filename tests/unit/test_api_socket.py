"""The listening socket `serve` hands to its API processes keeps its TCP family."""

from __future__ import annotations

import os
import socket

import pytest
import uvicorn

from qrloop import liveness
from qrloop.cli.processes import listening_socket


def test_the_socket_serve_hands_over_is_served_as_tcp(monkeypatch: pytest.MonkeyPatch) -> None:
    """uvicorn's own `fd=` takes a passed socket for a Unix one, so the event loop never set
    TCP_NODELAY on its connections and every answer waited about 40 ms for the client's
    delayed ACK (Nagle). The API process rebuilds the socket with its real family, so the loop
    treats its connections as TCP."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        monkeypatch.setenv(liveness.LISTEN_FD_ENV, str(os.dup(held.fileno())))
        with listening_socket(uvicorn.Config("qrloop.app:create_asgi")) as served:
            assert served.family == socket.AF_INET
            assert served.getsockname() == held.getsockname()
