"""A TCP proxy for fault tests: it forwards each connection made to it to a
server on loopback, and, once armed with byte patterns, cuts the first
connection whose client sends them all in one piece (a command): both of
its sides are closed and the piece never reaches the server. What the
client sends again on a new connection goes through. Standard library
only."""

import socket
import threading


class FaultProxy:
    def __init__(self, upstream_port, host="127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.patterns = None
        self.cuts = 0
        self.pairs = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, *patterns):
        """The next piece a client sends holding every one of patterns
        (bytes) cuts its connection; once."""
        with self.lock:
            self.patterns = patterns

    def close(self):
        with self.lock:
            self.closed = True
            pairs, self.pairs = self.pairs, []
        self.listener.close()
        for pair in pairs:
            _shut(pair)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            pair = (client, server)
            with self.lock:
                if self.closed:
                    _shut(pair)
                    return
                self.pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, client, server, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, server, client, False),
                             daemon=True).start()

    def _pump(self, pair, src, dst, from_client):
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if data and from_client and self._cuts(data):
                data = b""
            if not data:
                _shut(pair)
                return
            try:
                dst.sendall(data)
            except OSError:
                _shut(pair)
                return

    def _cuts(self, data):
        with self.lock:
            if self.patterns and all(p in data for p in self.patterns):
                self.patterns = None
                self.cuts += 1
                return True
        return False


def _shut(pair):
    for s in pair:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()
