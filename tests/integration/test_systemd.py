"""The systemd units as `make install` installs them: systemd-analyze verify
accepts the agent, the worker template and an instance of it, the
target, and the registry lifecycle job's service and timer, with no warning. The units name the installed binaries, so they are
installed (with PREFIX pointing into a temporary directory, as a packager's
staging root would) before they are verified.

And the daemons' side of the service manager's protocol: with $NOTIFY_SOCKET
and $WATCHDOG_USEC set as systemd sets them for Type=notify units with
WatchdogSec=, the agent and a worker each send READY=1 with a STATUS once
they serve, WATCHDOG=1 while healthy, and STOPPING=1 on SIGTERM. The test plays the service manager: it binds the
datagram socket and reads each sender's pid from its credentials."""

import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, REPO_ROOT, started_stack
from harness import scaled


@pytest.fixture(scope="module")
def installed():
    prefix = tempfile.mkdtemp(prefix="sluice-install-")
    # -o all: install what the test run built, never rebuild it here.
    out = subprocess.run(["make", "--no-print-directory", "-o", "all", "BUILD=" + BUILD,
                          "PREFIX=" + prefix, "install"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    yield prefix
    shutil.rmtree(prefix, ignore_errors=True)


def test_make_install_puts_binaries_units_and_examples_in_place(installed):
    for name in ("sluice-agent", "sluice-worker", "sluicectl", "sluice-registry"):
        assert os.access(os.path.join(installed, "bin", name), os.X_OK), name
    units = os.path.join(installed, "lib", "systemd", "system")
    assert sorted(os.listdir(units)) == [
        "sluice-agent.service", "sluice-registry-lifecycle.service",
        "sluice-registry-lifecycle.timer", "sluice-worker@.service", "sluice.target"]
    with open(os.path.join(units, "sluice-worker@.service")) as f:
        text = f.read()
    assert "ExecStart=%s/bin/sluice-worker " % installed in text and "@BINDIR@" not in text
    assert os.path.isfile(os.path.join(installed, "lib", "sysusers.d", "sluice.conf"))
    assert os.path.isfile(os.path.join(installed, "share", "sluice", "examples", "sluice.yaml"))


def test_units_pass_systemd_analyze_verify(installed):
    units = os.path.join(installed, "lib", "systemd", "system")
    # Unit names cannot hold a comma: "build,test" is the escaped instance below.
    instance = os.path.join(units, "sluice-worker@build\\x2ctest.service")
    os.symlink("sluice-worker@.service", instance)
    try:
        paths = [os.path.join(units, n) for n in (
            "sluice-agent.service", "sluice-worker@.service", "sluice.target",
            "sluice-registry-lifecycle.service", "sluice-registry-lifecycle.timer")] + [instance]
        out = subprocess.run(["systemd-analyze", "verify"] + paths, capture_output=True,
                             text=True, timeout=60, cwd=units)
    finally:
        os.unlink(instance)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


class ServiceManager:
    """The receiving end of $NOTIFY_SOCKET: datagrams with their sender's pid."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.sock.settimeout(0.2)
        self.got = []  # (pid, text)

    def read(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                continue
            pid = None
            for level, kind, cdata in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("iII", cdata[:12])[0]
            self.got.append((pid, data.decode()))

    def texts(self, pid):
        return [t for p, t in self.got if p == pid]


def test_daemons_notify_ready_status_watchdog_and_stopping(tmp_path, monkeypatch):
    manager = ServiceManager(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    stack_gen = started_stack("sluice-notify-", lambda repo, root: {}, workers=(("build", 2),))
    stack = next(stack_gen)
    try:
        agent, worker = stack.agent.popen.pid, stack.procs[-1].popen.pid
        manager.read(scaled(3))
        for pid, status in ((agent, "STATUS=accepting webhooks"),
                            (worker, "STATUS=0 job(s) running")):
            texts = manager.texts(pid)
            assert "READY=1\n" + status in texts, manager.got
            # Half the interval: at least two pings in about three seconds.
            assert texts.count("WATCHDOG=1") >= 2, manager.got
    finally:
        for p in (stack.procs[-1], stack.agent):
            p.stop()
        next(stack_gen, None)
    manager.read(0.5)
    assert "STOPPING=1" in manager.texts(agent), manager.got
    assert "STOPPING=1" in manager.texts(worker), manager.got


@pytest.mark.parametrize("argv", [["sluice-agent"], ["sluice-worker", "--kind", "build"]],
                         ids=["agent", "worker"])
def test_a_configuration_that_stops_a_daemon_is_an_error_in_the_journal(tmp_path, argv):
    # Under systemd stderr is the journal (JOURNAL_STREAM names it): the
    # line that says why the process did not start carries the error
    # priority, so that `journalctl -p warning` shows it.
    config = tmp_path / "sluice.yaml"
    config.write_text("worker:\n  lease: soon\n")
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as out:
        st = os.fstat(out.fileno())
        env = dict(os.environ, JOURNAL_STREAM="%d:%d" % (st.st_dev, st.st_ino))
        r = subprocess.run([os.path.join(BUILD, argv[0]), "--config", str(config)] + argv[1:],
                           stdout=subprocess.DEVNULL, stderr=out, env=env, timeout=10)
    assert r.returncode == 1, r.returncode
    assert stderr.read_text() == '<3>%s: %s:2:10: worker.lease: expected a duration like "10m"\n' % (
        argv[0], config), stderr.read_text()
