"""Hostile clients at POST /hooks/github: slow and silent connections do not
hold up anyone else, and malformed requests each get a clear 4xx while
nothing is recorded (no run, no delivery key).

The stack here has agent.http_timeout 2s and agent.max_body 256 KiB, so that
timeouts and limits are reached quickly."""

import json
import socket
import time
import uuid

import pytest

from conftest import (APP_REPO, HOOK_ID, pipeline, recv_until_closed, scaled, sign, started_stack,
                      trickle)
from resp import Redis

HTTP_TIMEOUT_S = 2
MAX_BODY = 256 * 1024


@pytest.fixture(scope="module")
def hstack():
    def pipelines(repo, root):
        return {"app.yaml": pipeline("app", APP_REPO, branches=["main"], checkout=repo.url,
                                     stages={"build": {"run": ["true"]}})}
    # No worker: what matters is what intake records.
    yield from started_stack(
        "sluice-hostile-", pipelines, workers=(),
        extra_settings={"agent": {"http_timeout": "%ds" % HTTP_TIMEOUT_S,
                                  "max_body": MAX_BODY}})


def delivery_keys(stack):
    with Redis(stack.redis_port) as r:
        return set(r.call("KEYS", "sluice:delivery:*"))


def raw_request(stack, head, body=b"", timeout=10):
    """Sends head (the request line and headers, CRLF-separated, without the
    blank line) and body as they are; returns (status, parsed JSON or raw)."""
    with socket.create_connection(("127.0.0.1", stack.agent_port), timeout=timeout) as s:
        s.sendall(head + b"\r\n\r\n" + body)
        return read_answer(s)


def read_answer(s):
    """One HTTP answer from socket s: (status, parsed JSON or raw bytes)."""
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n\r\n" in data:
                hdr, rest = data.split(b"\r\n\r\n", 1)
                length = [int(line.split(b":", 1)[1]) for line in hdr.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")]
                if length and len(rest) >= length[0]:
                    break
    except ConnectionResetError:
        pass
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    status = int(data[9:12])
    rest = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    try:
        return status, json.loads(rest)
    except ValueError:
        return status, rest


def hook_head(stack, body, *, event=b"push", extra=(), content_type=b"application/json",
              delivery=None):
    lines = [b"POST /hooks/github HTTP/1.1",
             b"Host: 127.0.0.1:%d" % stack.agent_port,
             b"Content-Type: " + content_type,
             b"X-GitHub-Event: " + event,
             b"X-GitHub-Delivery: " + (delivery or str(uuid.uuid4()).encode()),
             b"X-GitHub-Hook-ID: " + HOOK_ID.encode(),
             b"X-Hub-Signature-256: " + sign(stack.secret, body).encode(),
             b"Content-Length: %d" % len(body),
             b"Connection: close"]
    return b"\r\n".join(lines + list(extra))


def assert_rejected(stack, before, status, body, expected):
    assert status == expected, (status, body)
    assert isinstance(body, dict) and body["error"]["message"], body
    assert stack.run_count() == before[0]
    assert delivery_keys(stack) == before[1]


def snapshot(stack):
    return stack.run_count(), delivery_keys(stack)


def test_a_webhook_is_answered_promptly_while_slow_and_silent_clients_hang_on(hstack):
    hostile = []
    stop = None
    try:
        # Slow-loris: headers one byte a second, never finished.
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", hstack.agent_port))
            s.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n")
            hostile.append(s)
        # Slow body: complete headers, a body of 1000 bytes sent a byte a second.
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", hstack.agent_port))
            s.sendall(hook_head(hstack, b"x" * 1000) + b"\r\n\r\n")
            hostile.append(s)
        stop = trickle(hostile, 1.0)
        time.sleep(1.5)
        for _ in range(3):
            started = time.monotonic()
            status, body = hstack.post_hook("push", hstack.push_payload(APP_REPO))
            elapsed = time.monotonic() - started
            assert status == 202 and len(body["runs"]) == 1, (status, body)
            assert elapsed < scaled(1.0), elapsed
    finally:
        if stop:
            stop.set()
        for s in hostile:
            s.close()


@pytest.mark.parametrize("partial", [
    b"",                                              # connected, nothing sent
    b"POST /hooks/github HTTP/1.1\r\nHost: x\r\n",    # headers never finished
    b"POST /hooks/github HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 100\r\n\r\n{\"ref\":",          # body never finished
])
def test_a_silent_half_open_connection_is_dropped_after_http_timeout(hstack, partial):
    before = snapshot(hstack)
    with socket.create_connection(("127.0.0.1", hstack.agent_port)) as s:
        s.sendall(partial)
        s.settimeout(HTTP_TIMEOUT_S + scaled(5))
        started = time.monotonic()
        try:
            while s.recv(65536):
                pass
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - started
    # Closed by the agent (not by our own timeout), within about http_timeout.
    assert elapsed < HTTP_TIMEOUT_S + scaled(3), elapsed
    assert snapshot(hstack) == before


@pytest.mark.parametrize("pad", [[b"X-Pad: " + b"a" * (70 * 1024)],
                                 [b"X-Pad-%d: %s" % (i, b"a" * 1000) for i in range(70)]],
                         ids=["one-long-header", "many-headers"])
def test_headers_over_64_kib_are_400(hstack, pad):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    status, answer = raw_request(hstack, hook_head(hstack, body, extra=pad), body)
    # libevent stops reading at agent's 64 KiB header limit and answers its
    # own 400 page (HTML): the request never reaches intake.
    assert status == 400, (status, answer)
    assert snapshot(hstack) == before


def test_a_body_over_max_body_is_413(hstack):
    before = snapshot(hstack)
    payload = hstack.push_payload(APP_REPO)
    payload["pad"] = "a" * (MAX_BODY + 1)
    status, answer = hstack.post_hook("push", payload)
    assert status == 413, (status, answer)
    assert snapshot(hstack) == before


def test_json_nested_10000_deep_is_400(hstack):
    before = snapshot(hstack)
    inner = json.dumps(hstack.push_payload(APP_REPO))
    body = ('{"deep": ' + "[" * 10000 + "]" * 10000 + ", " + inner[1:]).encode()
    status, answer = hstack.post_hook("push", body)
    assert_rejected(hstack, before, status, answer, 400)
    assert "deep" in answer["error"]["message"] or "nest" in answer["error"]["message"], answer


@pytest.mark.parametrize("bad", [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"],
                         ids=["not-utf8", "overlong", "surrogate", "above-u10ffff"])
def test_invalid_utf8_in_the_payload_is_400(hstack, bad):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    body = body.replace(b'refs/heads/main"', b'refs/heads/ma' + bad + b'in"', 1)
    assert bad in body
    status, answer = hstack.post_hook("push", body)
    assert_rejected(hstack, before, status, answer, 400)


def test_a_nul_byte_in_the_body_is_400(hstack):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    body = body.replace(b"refs/heads/main", b"refs/heads/ma\x00in", 1)
    status, answer = hstack.post_hook("push", body)
    assert_rejected(hstack, before, status, answer, 400)
    assert "NUL" in answer["error"]["message"], answer


# Every NUL byte becomes another control character as it arrives, before
# libevent (which would end a header's value at it) parses anything, and a
# request target or header holding a control character is refused.
@pytest.mark.parametrize("old,new", [
    (b"X-GitHub-Delivery: ", b"X-GitHub-Delivery: \x00"),
    (b"X-GitHub-Delivery: ", b"X-GitHub-Delivery: 1\x00"),
    (b"X-Hub-Signature-256: sha256=", b"X-Hub-Signature-256: sha256=\x00"),
    (b"X-Hub-Signature-256: sha256=", b"X-Hub-Signature-256: sha256=a\x00"),
    (b"Content-Type: application/json", b"Content-Type: appli\x00cation/json"),
    (b"X-GitHub-Event: push", b"X-GitHub-Event: pu\x00sh"),
    (b"X-GitHub-Event: push", b"X-GitHub-Event: push\x00"),
    (b"X-GitHub-Event:", b"X-GitHub-Ev\x00ent:"),
    (b"Host: ", b"Host: 127.0.0.1\x00evil.example,"),
], ids=["delivery", "delivery-cut", "signature", "signature-cut", "content-type",
        "event", "event-end", "in-a-name", "host"])
def test_a_nul_byte_in_a_header_is_400(hstack, old, new):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    head = hook_head(hstack, body)
    assert old in head
    status, answer = raw_request(hstack, head.replace(old, new, 1), body)
    assert_rejected(hstack, before, status, answer, 400)
    name = new.split(b":")[0].split(b"\x00")[0].decode()
    assert "header " + name in answer["error"]["message"], answer
    assert "control character" in answer["error"]["message"], answer


def test_a_control_character_in_a_header_is_400(hstack):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    head = hook_head(hstack, body).replace(b"X-GitHub-Event: push", b"X-GitHub-Event: pu\x1bsh")
    status, answer = raw_request(hstack, head, body)
    assert_rejected(hstack, before, status, answer, 400)
    assert "header X-GitHub-Event holds a control character" in answer["error"]["message"]


def test_a_nul_byte_in_the_request_target_is_400(hstack):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    head = hook_head(hstack, body).replace(b"POST /hooks/github ", b"POST /hooks/github\x00x ")
    status, answer = raw_request(hstack, head, body)
    assert_rejected(hstack, before, status, answer, 400)
    assert "request target" in answer["error"]["message"], answer
    # Elsewhere than the webhook's path alike.
    status, answer = raw_request(hstack, b"GET /api/v1/ru\x00ns HTTP/1.1\r\nHost: x\r\n"
                                 b"Connection: close")
    assert status == 400 and "request target" in answer["error"]["message"], (status, answer)


def test_a_nul_byte_split_across_reads_is_still_seen(hstack):
    # The NUL arrives alone, in a packet of its own, between two halves of
    # the event's name.
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    head = hook_head(hstack, body).replace(b"X-GitHub-Event: push", b"X-GitHub-Event: pu\x00sh")
    at = head.index(b"\x00")
    with socket.create_connection(("127.0.0.1", hstack.agent_port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for part in (head[:at], head[at:at + 1], head[at + 1:] + b"\r\n\r\n" + body):
            s.sendall(part)
            time.sleep(0.05)
        status, answer = read_answer(s)
    assert_rejected(hstack, before, status, answer, 400)
    assert "header X-GitHub-Event" in answer["error"]["message"], answer


def test_a_refused_nul_leaves_the_connection_usable(hstack):
    # Only the NUL byte is touched: the next request on the same keep-alive
    # connection is recorded as usual.
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    bad = hook_head(hstack, body).replace(b"X-GitHub-Event: push", b"X-GitHub-Event: pu\x00sh")
    good = hook_head(hstack, body)
    keep = b"Connection: keep-alive"
    before = hstack.run_count()
    with socket.create_connection(("127.0.0.1", hstack.agent_port), timeout=10) as s:
        s.sendall(bad.replace(b"Connection: close", keep) + b"\r\n\r\n" + body)
        first = read_answer(s)
        s.sendall(good.replace(b"Connection: close", keep) + b"\r\n\r\n" + body)
        second = read_answer(s)
    assert first[0] == 400, first
    assert second[0] == 202 and len(second[1]["runs"]) == 1, second
    assert hstack.run_count() == before + 1


@pytest.mark.parametrize("name", [b"X-GitHub-Event", b"X-GitHub-Delivery", b"X-GitHub-Hook-ID",
                                  b"X-Hub-Signature-256", b"Content-Type"])
def test_a_duplicated_github_header_is_400(hstack, name):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    head = hook_head(hstack, body)
    # The same value again: even an identical repeat is refused.
    line = [x for x in head.split(b"\r\n") if x.lower().startswith(name.lower() + b":")][0]
    status, answer = raw_request(hstack, head + b"\r\n" + line, body)
    assert_rejected(hstack, before, status, answer, 400)
    assert "twice" in answer["error"]["message"], answer


@pytest.mark.parametrize("second", [b"Content-Length: 3", None])
def test_content_length_given_twice_is_400_and_the_connection_closed(hstack, second):
    """Two lengths (or the same one twice) are what a proxy in front may read
    otherwise than the agent: request smuggling. The bytes after the body
    are not read as another request."""
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    head = hook_head(hstack, body).replace(b"\r\nConnection: close", b"")
    again = second or b"Content-Length: %d" % len(body)
    smuggled = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", hstack.agent_port), timeout=10) as s:
        s.sendall(head + b"\r\n" + again + b"\r\n\r\n" + body + smuggled)
        data = recv_until_closed(s)
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1, data
    assert b"Content-Length is given twice" in data, data
    assert snapshot(hstack) == before


@pytest.mark.parametrize("ctype", [None, b"text/plain", b"application/x-www-form-urlencoded",
                                   b"application/jsonp", b"multipart/form-data; boundary=x",
                                   b""])
def test_a_content_type_other_than_json_is_415(hstack, ctype):
    before = snapshot(hstack)
    body = json.dumps(hstack.push_payload(APP_REPO)).encode()
    head = hook_head(hstack, body, content_type=ctype or b"")
    if ctype is None:
        head = b"\r\n".join(x for x in head.split(b"\r\n") if not x.startswith(b"Content-Type"))
    status, answer = raw_request(hstack, head, body)
    assert_rejected(hstack, before, status, answer, 415)


def test_the_hostile_stack_still_records_a_normal_webhook_once(hstack):
    before = snapshot(hstack)
    delivery = str(uuid.uuid4())
    payload = hstack.push_payload(APP_REPO)
    status, body = hstack.post_hook("push", payload, delivery=delivery)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    again_status, again = hstack.post_hook("push", payload, delivery=delivery)
    assert again_status == 202 and again.get("duplicate") is True, again
    assert hstack.run_count() == before[0] + 1
    assert delivery_keys(hstack) == before[1] | {
        ("sluice:delivery:%s:%s" % (HOOK_ID, delivery)).encode()}


def open_stream(stack, run_id, version=b"HTTP/1.1", extra=b""):
    s = socket.create_connection(("127.0.0.1", stack.agent_port), timeout=10)
    s.sendall(b"GET /api/v1/runs/%s/stages/build/log %s\r\nHost: x\r\n"
              b"Accept: text/event-stream\r\n%s\r\n" % (run_id.encode(), version, extra))
    return s


def test_a_quiet_log_stream_outlives_http_timeout_with_keep_alives(hstack):
    """A stage that prints nothing (here: queued, no worker) keeps its
    stream: keep-alive comments come within agent.http_timeout (2 s here),
    which would otherwise close the connection as idle."""
    status, body = hstack.post_hook("push", hstack.push_payload(APP_REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    s = open_stream(hstack, body["runs"][0])
    got, deadline = b"", time.monotonic() + 3 * HTTP_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            chunk = s.recv(4096)
            assert chunk, "closed after %r" % got
            got += chunk
    except socket.timeout:
        raise AssertionError("nothing for 10 s: %r" % got) from None
    finally:
        s.close()
    assert got.startswith(b"HTTP/1.1 200"), got
    assert got.count(b": keep-alive") >= 2, got


def test_a_log_stream_to_an_http_1_0_client_closes_its_connection(hstack):
    """HTTP/1.0 has no chunks: the stream ends with the connection, so even
    a keep-alive client is told Connection: close, not a Content-Length: 0
    the events would follow as if another answer."""
    status, body = hstack.post_hook("push", hstack.push_payload(APP_REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    s = open_stream(hstack, body["runs"][0], b"HTTP/1.0", b"Connection: keep-alive\r\n")
    try:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            assert chunk, head
            head += chunk
    finally:
        s.close()
    headers = head.split(b"\r\n\r\n", 1)[0].lower()
    assert b"connection: close" in headers, headers
    assert b"content-length" not in headers, headers
