"""A minimal synchronous Redis client (RESP2) for tests: Redis(port).call(
"HGET", key, field) returns bytes, int, list or None; an error reply raises
RedisError. Standard library only."""

import socket


class RedisError(Exception):
    pass


class Redis:
    """password: sent with AUTH first (as user's when given)."""

    def __init__(self, port, host="127.0.0.1", timeout=5, password=None, user=None):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        if password:
            try:
                self.call("AUTH", *([user] if user else []), password)
            except BaseException:
                self.close()
                raise

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._reply()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RedisError("unexpected reply %r" % line)

    def hgetall(self, key):
        flat = self.call("HGETALL", key) or []
        return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}
