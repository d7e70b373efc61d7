"""A Redis that wants a password: sluice.yaml names the file that holds it
(redis.password_file) and, for an ACL user, the user (redis.user); the agent
and the workers send AUTH first on every connection, and a run goes through.
A refused AUTH is logged once by each process, never with the password, and
counts as Redis being down: /healthz and webhooks answer 503, no run is
recorded, and the connection is retried with back-off. A new password in the
file needs a restart, which SIGHUP says."""

import time

import pytest

from conftest import (binary, hup_and_wait, log_text, pipeline, started_stack, wait_for)
from resp import Redis

REPO = "sluice-it/redis-auth"
PASSWORD = "redis pass-4c1f9a"
PREFIX = "sluice:"


def pipelines(repo, root):
    return {"auth.yaml": pipeline("redis-auth", REPO, checkout=repo.url,
                                  stages={"build": {"sh": "echo built"}})}


@pytest.fixture(params=[None, "sluice"], ids=["requirepass", "acl-user"])
def auth_stack(request):
    yield from started_stack("sluice-redis-auth-", pipelines, workers=(("build", 1),),
                             redis_password=PASSWORD, redis_user=request.param)


def redis(s):
    return Redis(s.redis_port, password=s.redis_password, user=s.redis_user)


def connections_received(r):
    stats = r.call("INFO", "stats").decode()
    return int(stats.split("total_connections_received:")[1].split()[0])


def push(s):
    status, body = s.post_hook("push", s.push_payload(REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    return s.wait_run(body["runs"][0])


def test_a_run_goes_through_a_redis_that_wants_a_password(auth_stack):
    s = auth_stack
    run = push(s)
    assert run["status"] == "succeeded", run
    assert any("built" in line["line"] for line in s.log(run["id"], "build"))
    with redis(s) as r:
        clients = r.call("CLIENT", "LIST").decode().splitlines()
    assert {c.split(" user=")[1].split()[0] for c in clients} == {s.redis_user or "default"}
    worker = next(p for p in s.procs if p.name == "worker-1")
    for p in (s.agent, worker):
        assert PASSWORD not in log_text(p) and "pass-4c1f9a" not in log_text(p)

    # The password in force is the one read at start.
    with open(s.redis_password_file, "w") as f:
        f.write("another password\n")
    try:
        for p in (s.agent, worker):
            log = hup_and_wait(p, "configuration reloaded")
            assert "needs a restart; old value kept\" key=redis.password_file" in log, log
        assert push(s)["status"] == "succeeded"
    finally:
        with open(s.redis_password_file, "w") as f:
            f.write(PASSWORD + "\n")


@pytest.fixture
def plain_stack():
    yield from started_stack("sluice-redis-refused-", pipelines, workers=(("build", 1),),
                             redis_password=PASSWORD)


@pytest.mark.parametrize("refusal", ["wrong password", "no password wanted"])
def test_a_refused_password_is_logged_once_and_records_nothing(plain_stack, refusal):
    s = plain_stack
    worker = next(p for p in s.procs if p.name == "worker-1")
    for p in (s.agent, worker):
        p.stop()
        s.procs.remove(p)
    if refusal == "wrong password":
        with open(s.redis_password_file, "w") as f:
            f.write("not-" + PASSWORD + "\n")
        error = "WRONGPASS invalid username-password pair"
        admin = redis(s)
    else:
        with redis(s) as r:
            r.call("CONFIG", "SET", "requirepass", "")
        error = "AUTH <password> called without any password configured"
        admin = Redis(s.redis_port)
    connections = connections_received(admin)

    agent = s._spawn("agent-refused", [binary("sluice-agent"), "--config", s.config])
    worker = s._spawn("worker-refused", [binary("sluice-worker"), "--config", s.config,
                                         "--kind", "build"])
    for p in (agent, worker):
        wait_for("%s to log the refusal" % p.name,
                 lambda: "redis: authentication failed" in log_text(p), 10, [p])
    status, body = s.get("/healthz")
    assert (status, body) == (503, {"status": "degraded", "redis": "down"})
    status, body = s.post_hook("push", s.push_payload(REPO))
    assert status == 503, (status, body)

    # Still refused, still up, and retried with back-off (100 ms doubling to
    # 5 s: a handful of connections each, not a tight loop), logged once.
    time.sleep(3)
    for p in (agent, worker):
        assert p.alive(), p.describe()
        lines = [line for line in log_text(p).splitlines() if "redis: authentication" in line]
        assert len(lines) == 1 and error in lines[0], log_text(p)
        assert "pass-4c1f9a" not in log_text(p)
    with admin as r:
        tries = connections_received(r) - connections
        assert r.call("KEYS", PREFIX + "run:*") == []
        assert r.call("KEYS", PREFIX + "delivery:*") == []
    assert 2 * 3 <= tries <= 2 * 8, tries
