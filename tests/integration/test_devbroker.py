"""sluice-devbroker as a process: bootstrap file (left to a broker started
before the one that wrote it first stopped), a produce and a fetch over
the Kafka wire protocol (tests/kafkawire.py), broker down/up on
SIGUSR1/SIGUSR2, clean exit.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from kafkawire import Client  # noqa: E402

BUILD = os.environ.get("SLUICE_BUILD", os.path.join(os.getcwd(), "build"))
BROKER = os.path.join(BUILD, "sluice-devbroker")


@pytest.fixture
def broker(tmp_path):
    if not os.access(BROKER, os.X_OK):
        pytest.fail(f"{BROKER} not built (make all, or set SLUICE_BUILD)")
    path = tmp_path / "bootstrap"
    proc = subprocess.Popen([BROKER, "--bootstrap-file", str(path), "--topic", "t:1",
                             "--default-topics", "--prefix", "x."],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    yield proc, path, line
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()


def test_bootstrap_file_matches_stdout_and_is_removed_on_sigterm(broker):
    proc, path, line = broker
    assert line.startswith("127.0.0.1:")
    assert path.read_text() == line + "\n"
    assert not [p for p in os.listdir(path.parent) if ".tmp." in p]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not path.exists()
    log = proc.stderr.read()
    assert "msg=stopping" in log
    for topic in ("t", "x.jobs.build", "x.jobs.deploy", "x.results", "x.events", "x.dlq"):
        assert f"topic={topic} " in log


def test_a_broker_stopping_after_its_successor_started_leaves_the_successor_s_file(broker):
    # A restart that does not wait for the old broker to exit: the file is
    # the new broker's by then, and its clients must still find it.
    old, path, _ = broker
    new = subprocess.Popen([BROKER, "--bootstrap-file", str(path)], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
    try:
        line = new.stdout.readline().strip()
        assert path.read_text() == line + "\n"
        old.send_signal(signal.SIGTERM)
        assert old.wait(timeout=10) == 0
        assert path.read_text() == line + "\n"
        assert "bootstrap file left: another devbroker wrote it" in old.stderr.read()
        new.send_signal(signal.SIGTERM)
        assert new.wait(timeout=10) == 0
        assert not path.exists()
    finally:
        if new.poll() is None:
            new.kill()
            new.wait()
        new.stdout.close()


def test_a_produced_record_is_fetched_back(broker):
    proc, _, line = broker
    client = Client(line)
    try:
        assert client.produce("t", b"run-1", b'{"n":1}') == (0, 0)
        assert client.produce("t", b"run-1", b'{"n":2}') == (0, 1)
        records = []
        while len(records) < 2:  # the broker may answer with one batch a fetch
            err, got = client.fetch("t", len(records))
            assert err == 0 and got
            records += got
        assert records == [(0, b"run-1", b'{"n":1}'), (1, b"run-1", b'{"n":2}')]
    finally:
        client.close()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_sigusr1_takes_the_broker_down_and_sigusr2_brings_it_back(broker):
    proc, _, line = broker
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    with pytest.raises(OSError):
        client = Client(line)
        try:
            client.produce("t", b"k", b"v")
        finally:
            client.close()
    proc.send_signal(signal.SIGUSR2)
    time.sleep(0.3)
    client = Client(line)
    try:
        assert client.produce("t", b"k", b"v")[0] == 0
    finally:
        client.close()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    log = proc.stderr.read()
    assert 'msg="brokers down"' in log
    assert 'msg="brokers up"' in log


@pytest.mark.parametrize("args", [["--bogus"], ["--topic", "t:0"], ["--brokers", "0"],
                                  ["--partitions", "x"], ["extra"],
                                  ["--topic", "a", "--topic", "a:2"]])
def test_bad_arguments_print_usage_and_exit_2(args):
    if not os.access(BROKER, os.X_OK):
        pytest.fail(f"{BROKER} not built (make all, or set SLUICE_BUILD)")
    res = subprocess.run([BROKER] + args, capture_output=True, text=True, timeout=10)
    assert res.returncode == 2
    assert "usage: sluice-devbroker" in res.stderr
    assert res.stdout == ""


@pytest.mark.parametrize("option,value", [
    ("--topic", "x:3:4"), ("--topic", "a/b"), ("--topic", ".."), ("--topic", "t" * 250),
    ("--topic", ":3"), ("--prefix", "a/b:"), ("--prefix", "p" * 240)],
    ids=["colons", "slash", "dotdot", "long", "empty", "prefix-chars", "prefix-long"])
def test_a_name_kafka_refuses_is_refused_at_start(option, value):
    # Kafka takes 1 to 249 of [a-zA-Z0-9._-], not . or ..: "x:3:4" is no
    # topic "x:3", and the default topics' names begin with the prefix.
    if not os.access(BROKER, os.X_OK):
        pytest.fail(f"{BROKER} not built (make all, or set SLUICE_BUILD)")
    res = subprocess.run([BROKER, option, value], capture_output=True, text=True, timeout=10)
    assert res.returncode == 2
    assert res.stderr.startswith(f"sluice-devbroker: bad {option} '{value}'")
    assert "1 to 249 letters, digits, '.', '_' or '-', not . or .." in res.stderr
    assert "usage: sluice-devbroker" in res.stderr
    assert res.stdout == ""


def test_a_default_topic_given_with_topic_keeps_its_partitions(tmp_path):
    """--topic names one of the default topics: that one is created with the
    partitions it gives, the others as --partitions says."""
    if not os.access(BROKER, os.X_OK):
        pytest.fail(f"{BROKER} not built (make all, or set SLUICE_BUILD)")
    proc = subprocess.Popen([BROKER, "--bootstrap-file", str(tmp_path / "bootstrap"),
                             "--topic", "sluice.results:2", "--default-topics"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        log = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert log.count("topic=sluice.results ") == 1, log
    assert "topic=sluice.results partitions=2" in log, log


def test_help_exits_0():
    if not os.access(BROKER, os.X_OK):
        pytest.fail(f"{BROKER} not built (make all, or set SLUICE_BUILD)")
    res = subprocess.run([BROKER, "--help"], capture_output=True, text=True, timeout=10)
    assert res.returncode == 0
    assert "--bootstrap-file" in res.stdout
