"""Just enough of the Kafka wire protocol (Produce v3, Fetch v4, record
batch v2) to talk to sluice-devbroker with nothing but the standard library:
Client(bootstrap).produce(topic, key, value) and .fetch(topic, offset,
partition) -> (error code, [(offset, key, value), ...]); envelopes(bootstrap,
topic) reads a whole topic of sluice's JSON messages.
"""
import json
import socket
import struct
import time


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def varint(n):
    n = (n << 1) ^ (n >> 63)  # zigzag
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(buf, pos):
    shift = n = 0
    while True:
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), pos


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def record_batch(key, value):
    body = (b"\x00" + varint(0) + varint(0) + varint(len(key)) + key + varint(len(value)) +
            value + varint(0))
    record = varint(len(body)) + body
    now = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + record
    head = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc))
    return struct.pack(">qi", 0, len(head) + len(after_crc)) + head + after_crc


def read_string(buf, pos):
    """The Kafka string at buf[pos:] (None when null) and the position after it."""
    n = struct.unpack(">h", buf[pos:pos + 2])[0]
    pos += 2
    if n < 0:
        return None, pos
    return buf[pos:pos + n].decode(), pos + n


class Client:
    def __init__(self, bootstrap, timeout=5):
        host, port = bootstrap.split(",")[0].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.corr = 0

    def close(self):
        self.sock.close()

    def call(self, api_key, version, body):
        self.send(api_key, version, body)
        return self.answer()

    def send(self, api_key, version, body):
        """Sends a request; answer() reads its answer, for requests the
        broker answers late (a JoinGroup, once the rebalance ends)."""
        self.corr += 1
        req = struct.pack(">hhi", api_key, version, self.corr) + kstr("pytest") + body
        self.sock.sendall(struct.pack(">i", len(req)) + req)

    def answer(self):
        size = struct.unpack(">i", self._read(4))[0]
        resp = self._read(size)
        assert struct.unpack(">i", resp[:4])[0] == self.corr
        return resp[4:]

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return buf

    def produce(self, topic, key, value):
        batch = record_batch(key, value)
        body = (struct.pack(">hhi", -1, -1, 5000) + struct.pack(">i", 1) + kstr(topic) +
                struct.pack(">ii", 1, 0) + struct.pack(">i", len(batch)) + batch)
        resp = self.call(0, 3, body)
        pos = 4 + 2 + len(topic.encode()) + 4  # topic count, name, partition count
        _, err, offset = struct.unpack(">ihq", resp[pos:pos + 14])
        return err, offset

    def fetch(self, topic, offset, partition=0):
        body = (struct.pack(">iiiib", -1, 100, 1, 1 << 20, 0) + struct.pack(">i", 1) +
                kstr(topic) + struct.pack(">iiqi", 1, partition, offset, 1 << 20))
        resp = self.call(1, 4, body)
        pos = 4 + 4 + 2 + len(topic.encode()) + 4  # throttle, topics, name, partitions
        _, err, _, _, naborted = struct.unpack(">ihqqi", resp[pos:pos + 26])
        pos += 26 + max(naborted, 0) * 16
        size = struct.unpack(">i", resp[pos:pos + 4])[0]
        records = resp[pos + 4:pos + 4 + max(size, 0)]
        return err, list(parse_batches(records))


def envelopes(bootstrap, topic, partitions=4):
    """Every message of topic, partition after partition, decoded from JSON."""
    client = Client(bootstrap)
    out = []
    try:
        for partition in range(partitions):
            offset = 0
            while True:
                err, records = client.fetch(topic, offset, partition)
                if err or not records:
                    break
                out += [json.loads(v) for _, _, v in records]
                offset = records[-1][0] + 1
    finally:
        client.close()
    return out


def parse_batches(buf):
    pos = 0
    while pos + 61 <= len(buf):
        base, length = struct.unpack(">qi", buf[pos:pos + 12])
        end = pos + 12 + length
        count = struct.unpack(">i", buf[pos + 57:pos + 61])[0]
        p = pos + 61
        for _ in range(count):
            _, p = read_varint(buf, p)  # record length
            p += 1  # attributes
            _, p = read_varint(buf, p)  # timestamp delta
            delta, p = read_varint(buf, p)
            klen, p = read_varint(buf, p)
            key = buf[p:p + klen] if klen >= 0 else None
            p += max(klen, 0)
            vlen, p = read_varint(buf, p)
            value = buf[p:p + vlen]
            p += max(vlen, 0)
            nheaders, p = read_varint(buf, p)
            for _ in range(nheaders):
                hlen, p = read_varint(buf, p)
                p += hlen
                hlen, p = read_varint(buf, p)
                p += max(hlen, 0)
            yield base + delta, key, value
        pos = end
