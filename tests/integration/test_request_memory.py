"""The bound on the bytes of requests being received, across connections
(agent.max_request_memory, agent/connection.c).

agent.max_connections bounds how many connections are open, and each may
hold a request of up to agent.max_body while it is being received: with no
bound on their sum, clients could make the agent hold max_connections ×
max_body. Here max_body is 1 MiB and max_request_memory 3 MiB: once the
requests being received hold more, the connection holding the most is
closed, until they hold 3 MiB or less. Requests that have arrived whole
are not counted: a keep-alive connection may send any number of them."""

import json
import re
import socket
import uuid

import pytest

from conftest import APP_REPO, HOOK_ID, pipeline, sign, started_stack, wait_for
from resp import Redis

KIB = 1024
MAX_BODY = 1024 * KIB
MAX_REQUEST_MEMORY = 3 * 1024 * KIB


@pytest.fixture(scope="module")
def mstack():
    def pipelines(repo, root):
        return {"app.yaml": pipeline("app", APP_REPO, branches=["main"], checkout=repo.url,
                                     stages={"build": {"run": ["true"]}})}
    # No worker: runs stay queued; only their records matter here.
    yield from started_stack(
        "sluice-request-memory-", pipelines, workers=(),
        extra_settings={"agent": {"max_body": MAX_BODY,
                                  "max_request_memory": MAX_REQUEST_MEMORY,
                                  "http_timeout": "60s"}})


def connect(stack):
    return socket.create_connection(("127.0.0.1", stack.agent_port), timeout=10)


def push(stack, size):
    """A signed push webhook whose body is `size` bytes (the payload padded
    with spaces, which JSON allows after a value): (head, body, delivery)."""
    body = json.dumps(stack.push_payload(APP_REPO)).encode()
    assert len(body) <= size
    body += b" " * (size - len(body))
    delivery = str(uuid.uuid4())
    head = ("POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "X-GitHub-Event: push\r\nX-GitHub-Delivery: %s\r\nX-GitHub-Hook-ID: %s\r\n"
            "X-Hub-Signature-256: %s\r\nContent-Length: %d\r\n\r\n"
            % (delivery, HOOK_ID, sign(stack.secret, body), len(body))).encode()
    return head, body, delivery


def read_answer(s):
    """Status and body of one answer on s (Content-Length framed)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, "the agent closed the connection: %r" % data[:200]
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = s.recv(65536)
        assert chunk
        rest += chunk
    return int(head[9:12]), json.loads(rest[:length])


def closed_by_agent(s, timeout=10):
    """Whether the agent closed s within timeout (its end read, or reset)."""
    s.settimeout(timeout)
    try:
        return s.recv(65536) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def receiving(stack):
    return stack.metric("sluice_http_request_bytes")


def delivered(stack, delivery):
    with Redis(stack.redis_port) as r:
        return r.call("EXISTS", "sluice:delivery:%s:%s" % (HOOK_ID, delivery)) == 1


def test_over_the_bound_the_connection_holding_the_most_is_closed(mstack):
    shed = mstack.metric("sluice_http_connections_shed_total")
    # 1000 + 600 + 700 KiB are being received: within the bound.
    sizes = [1000 * KIB, 600 * KIB, 700 * KIB]
    parts = []
    for size in sizes:
        head, body, delivery = push(mstack, MAX_BODY)
        s = connect(mstack)
        s.sendall(head + body[:size])
        parts.append((s, body, size, delivery))
    wait_for("the agent to read the three bodies so far",
             lambda: receiving(mstack) >= sum(sizes), 10)
    assert mstack.metric("sluice_http_connections_shed_total") == shed
    # 800 KiB more pass it: the first connection, holding the most, goes.
    head, body, delivery = push(mstack, MAX_BODY)
    s = connect(mstack)
    s.sendall(head + body[:800 * KIB])
    parts.append((s, body, 800 * KIB, delivery))
    assert closed_by_agent(parts[0][0])
    assert mstack.metric("sluice_http_connections_shed_total") == shed + 1
    wait_for("the agent to read the fourth body so far",
             lambda: receiving(mstack) >= (600 + 700 + 800) * KIB, 10)
    assert receiving(mstack) <= MAX_REQUEST_MEMORY
    lines = mstack.agent_log_lines("agent.max_request_memory")
    assert len(lines) == 1, lines
    closed = re.search(r" peer=127\.0\.0\.1 port=\d+ bytes=(\d+) ", lines[0])
    assert closed and int(closed.group(1)) >= 1000 * KIB, lines
    # The others were left alone: each finishes and is recorded.
    for s, body, size, delivery in parts[1:]:
        s.settimeout(10)
        s.sendall(body[size:])
        status, answer = read_answer(s)
        assert status == 202, (status, answer)
        assert delivered(mstack, delivery)
        s.close()
    parts[0][0].close()
    assert not delivered(mstack, parts[0][3])
    wait_for("nothing counted as being received",
             lambda: receiving(mstack) < 64 * KIB, 10)


def test_many_connections_sending_large_bodies_are_held_to_the_bound(mstack):
    shed = mstack.metric("sluice_http_connections_shed_total")
    socks = []
    try:
        # 16 × 900 KiB would be 14.4 MiB held; 3 of them fit in the bound.
        for _ in range(16):
            head, body, _ = push(mstack, MAX_BODY)
            s = connect(mstack)
            s.sendall(head + body[:900 * KIB])
            socks.append(s)
        wait_for("13 connections closed",
                 lambda: mstack.metric("sluice_http_connections_shed_total") == shed + 13,
                 20)
        assert receiving(mstack) <= MAX_REQUEST_MEMORY
        open_left = [s for s in socks if not closed_by_agent(s, timeout=0.2)]
        assert len(open_left) == 3
    finally:
        for s in socks:
            s.close()


def test_requests_received_whole_are_not_counted(mstack):
    """Five bodies of 900 KiB one after another on one keep-alive
    connection: 4.5 MiB read in all, but never more than one request being
    received at a time."""
    shed = mstack.metric("sluice_http_connections_shed_total")
    s = connect(mstack)
    try:
        for _ in range(5):
            head, body, delivery = push(mstack, 900 * KIB)
            s.sendall(head + body)
            status, answer = read_answer(s)
            assert status == 202, (status, answer)
            assert delivered(mstack, delivery)
    finally:
        s.close()
    assert mstack.metric("sluice_http_connections_shed_total") == shed


def test_bytes_sent_behind_a_request_being_answered_are_counted(mstack):
    """A client following a log whose connection sends more and more behind
    its request: what the agent reads of it is bounded like any body."""
    status, answer = mstack.post_hook("push", mstack.push_payload(APP_REPO))
    assert status == 202, (status, answer)
    run = answer["runs"][0]
    shed = mstack.metric("sluice_http_connections_shed_total")
    s = connect(mstack)
    try:
        s.sendall(b"GET /api/v1/runs/%s/stages/build/log HTTP/1.1\r\nHost: x\r\n"
                  b"Accept: text/event-stream\r\n\r\n" % run.encode())
        s.settimeout(10)
        assert s.recv(65536).startswith(b"HTTP/1.1 200")
        s.settimeout(0.5)
        chunk = b"x" * (64 * KIB)
        sent = 0
        try:
            while sent < 16 * MAX_REQUEST_MEMORY:
                s.sendall(chunk)
                sent += len(chunk)
        except (socket.timeout, ConnectionResetError, BrokenPipeError):
            pass
        # Either the agent stopped reading (the bytes wait in the kernel's
        # buffers, bounded), or it read them and closed the connection.
        assert (receiving(mstack) <= MAX_REQUEST_MEMORY and
                (sent < 16 * MAX_REQUEST_MEMORY or
                 mstack.metric("sluice_http_connections_shed_total") == shed + 1)), sent
    finally:
        s.close()
