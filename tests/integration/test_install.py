"""`make install` with DESTDIR and PREFIX, as a packager runs it: binaries,
units, example configuration and man pages land under DESTDIR, name PREFIX,
and the man pages render without a warning (`man sluicectl`,
`man 5 sluice.yaml`, `man 8 sluice-agent`, `man 8 sluice-worker`)."""

import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import BUILD, REPO_ROOT

PREFIX = "/usr"
PAGES = {"man1": ["sluicectl.1"], "man5": ["sluice.yaml.5"],
         "man8": ["sluice-agent.8", "sluice-registry.8", "sluice-worker.8"]}


@pytest.fixture(scope="module")
def staged():
    destdir = tempfile.mkdtemp(prefix="sluice-destdir-")
    # -o all: install what the test run built, never rebuild it here.
    out = subprocess.run(["make", "--no-print-directory", "-o", "all", "BUILD=" + BUILD,
                          "PREFIX=" + PREFIX, "DESTDIR=" + destdir, "install"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    yield destdir
    shutil.rmtree(destdir, ignore_errors=True)


def test_install_stages_everything_under_destdir(staged):
    root = staged + PREFIX
    for name in ("sluice-agent", "sluice-worker", "sluicectl"):
        assert os.access(os.path.join(root, "bin", name), os.X_OK), name
    with open(os.path.join(root, "lib", "systemd", "system", "sluice-agent.service")) as f:
        # The unit names where the binary will be, not the staging directory.
        assert "ExecStart=/usr/bin/sluice-agent " in f.read()
    assert os.path.isfile(os.path.join(root, "share", "sluice", "examples", "sluice.yaml"))
    for section, pages in PAGES.items():
        assert sorted(os.listdir(os.path.join(root, "share", "man", section))) == pages
    with open(os.path.join(root, "share", "man", "man5", "sluice.yaml.5")) as f:
        text = f.read()
    assert "/usr/share/sluice/examples/" in text and "@PREFIX@" not in text


@pytest.mark.parametrize("section,page", [(s, p) for s, ps in PAGES.items() for p in ps])
def test_man_pages_render_without_warnings(staged, section, page):
    path = os.path.join(staged + PREFIX, "share", "man", section, page)
    r = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", path], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0 and not r.stderr, r.stderr


def test_man_finds_the_pages_by_name_and_section(staged):
    env = dict(os.environ, MANPATH=os.path.join(staged + PREFIX, "share", "man"),
               MANWIDTH="80", MAN_KEEP_FORMATTING="0")
    for args, title in ((["sluicectl"], "SLUICECTL(1)"), (["5", "sluice.yaml"], "SLUICE.YAML(5)"),
                        (["8", "sluice-worker"], "SLUICE-WORKER(8)")):
        r = subprocess.run(["man", "-P", "cat"] + args, capture_output=True, text=True,
                           env=env, timeout=30)
        assert r.returncode == 0, (args, r.stderr)
        assert r.stdout.lstrip().startswith(title), (args, r.stdout[:200])
