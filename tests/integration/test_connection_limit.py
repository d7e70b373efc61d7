"""The limit on open connections (agent.max_connections, agent/connection.c).

Every connection may hold a request of up to agent.max_body until it is
answered, so the count of open connections is what bounds the memory
clients can make the agent use. At the limit the agent stops accepting:
new connections wait in the listening socket's backlog and are taken as
soon as others close. Here the limit is 6, and each way a connection can
end is repeated past it: a connection whose end went uncounted would leave
the agent at its limit, and the requests after it unanswered."""

import json
import socket
import struct
import threading
import time
import uuid

import pytest

from conftest import APP_REPO, HOOK_ID, pipeline, sign, started_stack, trickle, wait_for

LIMIT = 6
HTTP_TIMEOUT_S = 3
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def cstack():
    def pipelines(repo, root):
        return {"app.yaml": pipeline("app", APP_REPO, branches=["main"], checkout=repo.url,
                                     stages={"build": {"run": ["true"]}})}
    # No worker: the run stays queued, and its log can be followed.
    yield from started_stack(
        "sluice-connections-", pipelines, workers=(),
        extra_settings={"agent": {"max_connections": LIMIT,
                                  "http_timeout": "%ds" % HTTP_TIMEOUT_S,
                                  "max_body": MAX_BODY}})


def connect(stack):
    return socket.create_connection(("127.0.0.1", stack.agent_port), timeout=10)


def answer_status(s):
    """The status of the one answer on s, read until the connection closes
    or the answer's headers and Content-Length bytes are in."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data[9:12])


def closed_by_peer(s):
    """Whether the agent closed s (its end read, or reset as we wrote)."""
    s.setblocking(False)
    try:
        return s.recv(65536, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def open_count(stack):
    """Connections open besides the one asking."""
    return stack.metric("sluice_http_connections") - 1


def wait_all_closed(stack):
    wait_for("every connection counted out", lambda: open_count(stack) == 0, 10)


def follow_log(stack, run):
    """A connection following a stage's log (a busy one, never closed to
    make room)."""
    s = connect(stack)
    s.sendall(b"GET /api/v1/runs/%s/stages/build/log HTTP/1.1\r\nHost: x\r\n"
              b"Accept: text/event-stream\r\n\r\n" % run.encode())
    assert answer_status(s) == 200
    return s


def test_at_the_limit_a_new_connection_waits_until_another_closes(cstack):
    before = cstack.metric("sluice_http_connection_limit_reached_total")
    status, body = cstack.post_hook("push", cstack.push_payload(APP_REPO))
    assert status == 202, (status, body)
    run = body["runs"][0]
    idle = [follow_log(cstack, run) for _ in range(LIMIT - 1)]
    try:
        wait_for("the followers counted", lambda: open_count(cstack) == LIMIT - 1, 10)
        # One more fills the limit; the one after it waits in the backlog,
        # longer than a connection idle would be left open at the limit.
        idle.append(follow_log(cstack, run))
        answer = {}

        def deliver():
            answer["status"], answer["body"] = cstack.post_hook(
                "push", cstack.push_payload(APP_REPO))
            answer["done"] = time.monotonic()

        waiting = threading.Thread(target=deliver)
        waiting.start()
        time.sleep(2.0)
        assert "status" not in answer, answer
        wait_for("the limit's warning",
                 lambda: cstack.agent_log_lines("connection limit reached"), 5)
        closed = time.monotonic()
        idle.pop().close()
        waiting.join(10)
        assert answer.get("status") == 202, answer
        assert answer["done"] >= closed, answer
    finally:
        for s in idle:
            s.close()
    wait_all_closed(cstack)
    warnings = cstack.agent_log_lines("connection limit reached")
    assert len(warnings) == 1 and "max_connections=%d" % LIMIT in warnings[0], warnings
    wait_for("the notice", lambda: cstack.agent_log_lines("connections below their limit again"), 5)
    assert cstack.metric("sluice_http_connection_limit_reached_total") == before + 1


@pytest.mark.parametrize("slow", [False, True])
def test_at_the_limit_the_connection_idle_the_longest_makes_room(cstack, slow):
    """Connections that send nothing, or a byte of their headers now and
    then (slowloris), do not keep a webhook out: at the limit the one with
    no request for the longest, a second or more, is closed."""
    before = cstack.metric("sluice_http_connections_evicted_total")
    hostile = [connect(cstack) for _ in range(LIMIT)]
    stop = None
    if slow:
        for s in hostile:
            s.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        stop = trickle(hostile, 0.2)
    try:
        time.sleep(1.2)
        started = time.monotonic()
        status, body = cstack.post_hook("push", cstack.push_payload(APP_REPO))
        assert status == 202, (status, body)
        assert time.monotonic() - started < 2.0
        # One of them (all as old, to the ms) is what the agent closed.
        assert sum(closed_by_peer(s) for s in hostile) == 1
    finally:
        if stop:
            stop.set()
        for s in hostile:
            s.close()
    assert cstack.metric("sluice_http_connections_evicted_total") >= before + 1
    assert cstack.agent_log_lines("connection closed to make room")
    wait_all_closed(cstack)


def test_a_connection_closed_by_its_client_gives_its_place_back(cstack):
    for _ in range(LIMIT * 2):
        connect(cstack).close()
    wait_all_closed(cstack)


def test_connections_answered_and_kept_alive_give_their_places_back(cstack):
    for _ in range(LIMIT * 2):
        with connect(cstack) as s:
            for _ in range(3):
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert answer_status(s) in (200, 503)
    wait_all_closed(cstack)


def test_connections_refused_with_400_and_413_give_their_places_back(cstack):
    for i in range(LIMIT * 2):
        with connect(cstack) as s:
            if i % 2:
                s.sendall(b"NONSENSE\r\n\r\n")
                assert answer_status(s) == 400
            else:
                body = b"{" + b" " * (MAX_BODY + 1) + b"}"
                s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body))
                assert answer_status(s) == 413
    wait_all_closed(cstack)


def test_connections_reset_in_the_middle_of_a_body_give_their_places_back(cstack):
    body = b'{"ref": "refs/heads/main"}' * 100
    for _ in range(LIMIT * 2):
        s = connect(cstack)
        s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
                  + body[:len(body) // 2])
        # SO_LINGER 0: close sends a RST.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    wait_all_closed(cstack)


def test_silent_connections_dropped_by_http_timeout_give_their_places_back(cstack):
    silent = [connect(cstack) for _ in range(LIMIT)]
    try:
        # At the limit; each is dropped after http_timeout, and then a
        # webhook is taken again.
        for s in silent:
            assert s.recv(1) == b""
        status, body = cstack.post_hook("push", cstack.push_payload(APP_REPO))
        assert status == 202, (status, body)
    finally:
        for s in silent:
            s.close()
    wait_all_closed(cstack)


def test_followed_logs_and_waiting_webhooks_whose_clients_leave_give_their_places_back(
        cstack):
    status, body = cstack.post_hook("push", cstack.push_payload(APP_REPO))
    assert status == 202, (status, body)
    run = body["runs"][0]
    for _ in range(LIMIT * 2):
        with connect(cstack) as s:
            s.sendall(b"GET /api/v1/runs/%s/stages/build/log HTTP/1.1\r\nHost: x\r\n"
                      b"Accept: text/event-stream\r\n\r\n" % run.encode())
            assert answer_status(s) == 200
        # A webhook whose client leaves right after sending it: the agent
        # records it and answers no one.
        payload = cstack.push_payload(APP_REPO)
        raw = json.dumps(payload).encode()
        with connect(cstack) as s:
            s.sendall(b"\r\n".join([
                b"POST /hooks/github HTTP/1.1", b"Host: x",
                b"Content-Type: application/json", b"X-GitHub-Event: push",
                b"X-GitHub-Delivery: " + str(uuid.uuid4()).encode(),
                b"X-GitHub-Hook-ID: " + HOOK_ID.encode(),
                b"X-Hub-Signature-256: " + sign(cstack.secret, raw).encode(),
                b"Content-Length: %d" % len(raw), b"", raw]))
    wait_all_closed(cstack)
    status, body = cstack.post_hook("push", cstack.push_payload(APP_REPO))
    assert status == 202, (status, body)
