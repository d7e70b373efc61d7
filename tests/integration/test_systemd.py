"""The systemd units as `make install` installs them: systemd-analyze verify
accepts the agent, the worker template and an instance of it, the
target, and the registry lifecycle job's service and timer, with no warning. The units name the installed binaries, so they are
installed (with PREFIX pointing into a temporary directory, as a packager's
staging root would) before they are verified."""

import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import BUILD, REPO_ROOT


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
