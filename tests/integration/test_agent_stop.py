"""An agent that stops publishes what its outbox read and deletes what was
delivered before it exits, and gives the events lease up only after its
events: nothing it published is left in Redis for the next agent to claim
and publish again (30 s later, after claim_idle_ms). With nothing pending
under its name, it leaves the outbox's consumer group."""

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from conftest import pipeline, started_stack, wait_for  # noqa: E402
from kafkawire import envelopes  # noqa: E402
from resp import Redis  # noqa: E402

REPO = "sluice-it/agent-stop"
RUNS = 30


def pipelines(repo, root):
    return {"stop.yaml": pipeline("agent-stop", REPO, checkout=repo.url,
                                  stages={"build": {"run": ["true"]}})}


@pytest.fixture
def stop_stack():
    yield from started_stack("sluice-agent-stop-", pipelines, workers=())


def test_a_stopping_agent_leaves_nothing_it_published_in_the_outbox(stop_stack):
    s = stop_stack

    def holds_the_events_lease():
        with open(s.agent.log) as f:
            return "this process publishes the events" in f.read()
    wait_for("the agent to take the events lease", holds_the_events_lease, 20)
    runs = []
    for _ in range(RUNS):
        status, body = s.post_hook("push", s.push_payload(REPO))
        assert status == 202, body
        runs += body["runs"]
    # At once, while the jobs and events are still on their way to Kafka.
    s.agent.popen.send_signal(signal.SIGTERM)
    assert s.agent.popen.wait(30) == 0, s.agent.describe()

    with Redis(s.redis_port) as r:
        left = {stream: r.call("XLEN", "sluice:" + stream)
                for stream in ("outbox", "outbox:events")}
        pending = r.call("XPENDING", "sluice:outbox", "dispatch")[0]
        consumers = r.call("XINFO", "CONSUMERS", "sluice:outbox", "dispatch")
    assert left == {"outbox": 0, "outbox:events": 0} and pending == 0, (left, pending)
    # Nothing pending under its name: it left the group, which keeps no
    # consumer for every agent that ever ran.
    names = [dict(zip(c[::2], c[1::2]))[b"name"].decode() for c in consumers]
    assert not [n for n in names if n.startswith("agent:")], names
    jobs = [e["data"]["run"] for e in envelopes(s.brokers, "sluice.jobs.build")]
    assert sorted(jobs) == sorted(runs)
    created = [e["data"]["run"] for e in envelopes(s.brokers, "sluice.events")
               if e["type"] == "dev.sluice.run.created"]
    assert sorted(created) == sorted(runs)
