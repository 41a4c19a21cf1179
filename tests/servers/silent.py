"""A TCP port that accepts connections and never answers (no TLS handshake, no HTTP): what a firewall that
swallows packets after the handshake, a hung load balancer or a stopped process behind a listening socket look
like to a client. Connections are held open until the server is closed."""

from __future__ import annotations

import socket
import threading


class SilentServer:
    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.socket.getsockname()[1]
        self.held: list[socket.socket] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return  # closed
            self.held.append(connection)
            self.accepted += 1

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.socket.close()
        for connection in self.held:
            connection.close()
