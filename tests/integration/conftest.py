"""Integration fixtures: one shared stack (tests/harness.py) running the
pipelines every test uses, checks that no process died during a test, and
the tail of every log in a failing test's report.
"""

import os
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

# The test modules import the harness's names from here.
from harness import *  # noqa: E402,F401,F403
from harness import STACKS, LocalRepo, Stack, pipeline  # noqa: E402

# The pipelines every test shares. Repository names are made up: each names
# the pipeline a payload is meant for; all build the same local repository.
APP_REPO = "sluice-it/app"
FAILING_REPO = "sluice-it/failing"
REFS_REPO = "sluice-it/refs"
RELEASES_REPO = "sluice-it/releases"
MULTI_REPO = "sluice-it/multi"
SLOW_REPO = "sluice-it/slow"
# The secret of the one pipeline that does not use the stack's secret.
OTHER_SECRET = "another-secret-for-multi-other"

BUILD_SCRIPT = (
    'echo "building $1 on $2"; echo "greeting $3 and $GREETING"; cat content.txt; '
    'if [ -f only-in-second.txt ]; then cat only-in-second.txt; fi')


def shared_pipelines(repo):
    return {
        "app.yaml": pipeline("app", APP_REPO, events=["push", "pull_request"],
                             branches=["main", "master"], checkout=repo.url,
                             vars_={"GREETING": "hello"}, stages={
            "build": {"run": ["sh", "-c", BUILD_SCRIPT, "sh", "${SLUICE_SHA}", "${SLUICE_REF}",
                              "${GREETING}"], "timeout": "1m"},
            "test": {"run": ["./test.sh"], "needs": ["build"]},
        }),
        "failing.yaml": pipeline("failing", FAILING_REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", "echo about to fail; exit 3"]},
            "test": {"run": ["sh", "-c", "echo this must never run"], "needs": ["build"]},
        }),
        # Every branch and "v" tag, but those the "!" globs exclude.
        "refs.yaml": pipeline("refs", REFS_REPO, branches=["**", "!dependabot/**"],
                              tags=["v*", "!v*-rc*"], checkout=repo.url,
                              stages={
            "build": {"run": ["sh", "-c", 'printf "%s\\n" "$1" > ref.txt; echo "$1"', "sh",
                              "${SLUICE_REF}"]},
        }),
        # Tags alone: a branch's push starts nothing, a pull request does.
        "releases.yaml": pipeline("releases", RELEASES_REPO, tags=["v*"], checkout=repo.url,
                                  events=["push", "pull_request"],
                                  stages={"build": {"run": ["true"]}}),
        # Two pipelines of one repository and one secret, and a third with
        # its own secret; build fans out to two stages of kind test.
        "multi-a.yaml": pipeline("multi-a", MULTI_REPO, checkout=repo.url, stages=DAG_STAGES),
        "multi-b.yaml": pipeline("multi-b", MULTI_REPO, checkout=repo.url, stages=DAG_STAGES),
        "multi-other.yaml": pipeline("multi-other", MULTI_REPO, checkout=repo.url,
                                    secret_file="other-secret", stages=DAG_STAGES),
        "slow.yaml": pipeline("slow", SLOW_REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", "echo sleeping; exec sleep 30"], "timeout": "1s"},
            "test": {"run": ["true"], "needs": ["build"]},
        }),
    }


DAG_STAGES = {
    "build": {"run": ["sh", "-c", "echo built > built.txt; echo built $SLUICE_PIPELINE"]},
    "unit": {"kind": "test", "run": ["sh", "-c", "echo unit $SLUICE_STAGE"], "needs": ["build"]},
    "lint": {"kind": "test", "run": ["sh", "-c", "echo lint $SLUICE_STAGE"], "needs": ["build"]},
    "report": {"kind": "test", "run": ["sh", "-c", "echo report"], "needs": ["unit", "lint"]},
}


def started_stack(prefix, pipelines, stack_class=Stack, **options):
    """For a fixture to `yield from`: a Stack (or stack_class) started in a
    new temporary directory named with prefix, with the files
    pipelines(repo, root) returns and Stack's other options (workers,
    extra_settings, ...). Afterwards it is stopped and the directory removed,
    unless SLUICE_KEEP_TMP is set."""
    root = tempfile.mkdtemp(prefix=prefix)
    repo = LocalRepo(os.path.join(root, "repo"))
    s = stack_class(root, repo, pipelines(repo, root), **options)
    try:
        s.start()
    except BaseException as e:
        s.stop()
        raise RuntimeError("the stack did not start: %s\n%s" % (e, s.report())) from None
    yield s
    s.stop()
    if not os.environ.get("SLUICE_KEEP_TMP"):
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    yield from started_stack("sluice-it-", lambda repo, root: shared_pipelines(repo),
                             extra_secrets={"other-secret": OTHER_SECRET})


@pytest.fixture(autouse=True)
def _processes_still_up():
    """After each test every process of every live stack must still run: a
    crash is reported by the test that caused it, with the logs."""
    yield
    dead = [p for s in STACKS for p in s.procs if not p.alive()]
    if dead:
        report = "\n".join(p.describe() for p in dead)
        # Report each death once.
        for s in STACKS:
            s.procs = [p for p in s.procs if p.alive()]
        pytest.fail("process died during the test:\n" + report, pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and STACKS:
        rep.sections.append(("sluice process logs (%s)" % rep.when,
                             "\n".join(s.report() for s in STACKS)))


@pytest.fixture(scope="session")
def push_run(stack):
    """A push of main's HEAD to the app pipeline, finished."""
    status, body = stack.post_hook("push", stack.push_payload(APP_REPO))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return stack.wait_run(body["runs"][0])


@pytest.fixture(scope="session")
def failed_run(stack):
    """A push to the failing pipeline, whose build exits 3, finished."""
    status, body = stack.post_hook("push", stack.push_payload(FAILING_REPO))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return stack.wait_run(body["runs"][0])
