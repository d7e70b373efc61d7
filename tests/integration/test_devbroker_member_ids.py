"""sluice-devbroker keeps consumer-group member ids unique. librdkafka
2.0.2's mock cluster names a member that joins without an id after the
address of its member record; members evicted by the mock's session sweep
have their records freed and rejoin under their old ids. Here ten members
are evicted that way and a new member joins just before they rejoin: with
glibc handing a freed record straight back, the new member would get an
evicted member's address as its id, and that member's rejoin would abort the
mock (rd_kafka_mock_cgrp_member_add: Assertion `!member->resp' failed). The
devbroker writes such an id as the address and a serial number that never
repeats (queue/devbroker/member_ids.c), so every id stays distinct and the
broker stays up.
"""
import re
import signal
import struct
import subprocess
import time

import pytest

from conftest import binary, built_with_asan
from kafkawire import Client, kstr, read_string

JOIN_GROUP, HEARTBEAT = 11, 12
UNKNOWN_MEMBER_ID = 25
GROUP = "member-ids"
# Above the mock's 3 s first-join delay, or the sweep evicts the members
# before their first join is answered. The mock counts a member's session
# from the answer to its join and sweeps once a second.
SESSION_MS = 4000
# More evicted records than glibc's per-thread cache holds (7 per size), so
# that some reach the free lists the member records are allocated from.
EVICTED = 10


class Member(Client):
    """A group member on a connection of its own. Requests and answers are
    apart: the broker answers a JoinGroup only when the rebalance ends."""

    def __init__(self, bootstrap):
        super().__init__(bootstrap, timeout=30)
        self.id = ""
        self.generation = -1

    def join(self, member_id):
        """Sends JoinGroup v0 under member_id ("" for a new member)."""
        self.send(JOIN_GROUP, 0, kstr(GROUP) + struct.pack(">i", SESSION_MS) + kstr(member_id) +
                  kstr("consumer") + struct.pack(">i", 1) + kstr("roundrobin") +
                  struct.pack(">i", 0))

    def joined(self):
        """The JoinGroup answer's error code; sets id and generation."""
        resp = self.answer()
        err, self.generation = struct.unpack(">hi", resp[:6])
        _, pos = read_string(resp, 6)  # protocol
        _, pos = read_string(resp, pos)  # leader
        self.id, _ = read_string(resp, pos)
        return err

    def heartbeat(self):
        self.send(HEARTBEAT, 0, kstr(GROUP) + struct.pack(">i", self.generation) + kstr(self.id))
        return struct.unpack(">h", self.answer()[:2])[0]


def address(member_id):
    return member_id.split("-")[0]


@pytest.fixture
def broker(tmp_path):
    proc = subprocess.Popen([binary("sluice-devbroker"), "--bootstrap-file", str(tmp_path / "bootstrap"),
                             "--topic", "t:1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    members = []
    yield proc, line, members
    for m in members:
        m.close()
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def test_members_evicted_by_the_session_sweep_rejoin_while_a_new_member_joins(broker):
    proc, bootstrap, members = broker
    evicted = [Member(bootstrap) for _ in range(EVICTED)]
    members.extend(evicted)
    for m in evicted:
        m.join("")
    assert [m.joined() for m in evicted] == [0] * EVICTED
    old_ids = [m.id for m in evicted]
    assert len(set(old_ids)) == EVICTED
    # The mock's "%p" of the member record, and the devbroker's serial.
    assert all(re.fullmatch(r"0x[0-9a-f]+-[0-9]+", i) for i in old_ids), old_ids

    # Silent for longer than the session: the sweep evicts them all.
    time.sleep(SESSION_MS / 1000 + 1.3)
    assert evicted[0].heartbeat() == UNKNOWN_MEMBER_ID

    newcomer = Member(bootstrap)
    members.append(newcomer)
    newcomer.join("")
    time.sleep(0.05)  # its join reaches the group first
    for m, old in zip(evicted, old_ids):
        m.join(old)
    try:
        assert newcomer.joined() == 0
        answers = [m.joined() for m in evicted]
    except OSError as e:
        proc.wait(timeout=10)
        pytest.fail("sluice-devbroker died (%s): %s" % (e, proc.stderr.read()[-2000:]))
    assert newcomer.id not in old_ids
    assert re.fullmatch(r"0x[0-9a-f]+-[0-9]+", newcomer.id), newcomer.id
    # glibc handed the newcomer an evicted member's record: by address
    # alone, the mock would have given it an id still in use. (ASan's
    # allocator holds freed blocks back, so under make asan it does not.)
    if not built_with_asan("sluice-devbroker"):
        assert address(newcomer.id) in [address(i) for i in old_ids], (newcomer.id, old_ids)
    assert answers == [0] * EVICTED
    assert [m.id for m in evicted] == old_ids

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "Assertion" not in proc.stderr.read()
