"""Workspaces: removal by age (with a tiny worker.workspace_ttl the
workspace of an old run goes, the one of a running stage stays until it
finishes, even when another worker sharing the state directory sweeps),
checkouts that fail (the stage fails with git's reason, its log
shows what git said, and the worker carries on) and worker.checkout_timeout."""

import os
import time

import pytest

from conftest import free_port, pipeline, started_stack, wait_for

SLOW_WS_REPO = "sluice-it/slow-workspace"
GONE_REPO = "sluice-it/gone"
SHARED_REPO = "sluice-it/shared-state"
TOKEN_REPO = "sluice-it/token-in-url"


def pipelines(repo, root):
    return {
        "slow.yaml": pipeline("slow-workspace", SLOW_WS_REPO, checkout=repo.url, stages={
            "build": {"run": ["sh", "-c", "echo started; sleep 3"]}}),
        "shared.yaml": pipeline("shared-state", SHARED_REPO, checkout=repo.url, stages={
            "build": {"run": ["true"]},
            "test": {"run": ["sh", "-c", "sleep 3; cat content.txt"], "needs": ["build"]}}),
        # A private repository's token in its URL; nothing listens there.
        "token.yaml": pipeline("token-in-url", TOKEN_REPO,
                               checkout="https://x-access-token:ghp_notshown@127.0.0.1:%d/a.git"
                               % free_port(), stages={"build": {"run": ["true"]}}),
        # A repository that is not there: git clone --mirror fails, loudly.
        "gone.yaml": pipeline("gone", GONE_REPO,
                              checkout="file://" + os.path.join(root, "no-such-repo.git"),
                              stages={"build": {"run": ["true"]}}),
    }


@pytest.fixture(scope="module")
def ws_stack():
    # Two workers on one state directory, as the instances of
    # sluice-worker@.service are.
    yield from started_stack("sluice-ws-", pipelines, workers=(("build", 1), ("test", 1)),
                             extra_settings={"worker": {"workspace_ttl": "1s"}})


def test_old_workspaces_go_and_running_ones_stay(ws_stack):
    s = ws_stack
    root = os.path.join(s.state_dir, "workspaces")
    old = os.path.join(root, "r_old", "build")
    os.makedirs(old)
    with open(os.path.join(old, "leftover.txt"), "w") as f:
        f.write("from a run long gone\n")
    hour_ago = time.time() - 3600
    os.utime(os.path.join(root, "r_old"), (hour_ago, hour_ago))

    status, body = s.post_hook("push", s.push_payload(SLOW_WS_REPO))
    assert status == 202, (status, body)
    run_id = body["runs"][0]
    mine = os.path.join(root, run_id, "build")
    wait_for("the stage to start", lambda: any(
        l["line"] == "started" for l in s.log(run_id, "build")), 20)
    assert os.path.isfile(os.path.join(mine, "content.txt"))

    wait_for("the old workspace to be removed",
             lambda: not os.path.exists(os.path.join(root, "r_old")), 5)
    # Older than the ttl by now, but its stage is running.
    assert s.run(run_id)["stages"]["build"]["status"] == "running"
    assert os.path.isfile(os.path.join(mine, "content.txt"))

    assert s.wait_run(run_id, timeout=20)["status"] == "succeeded"
    wait_for("the finished run's workspace to be removed",
             lambda: not os.path.exists(os.path.join(root, run_id)), 5)
    wait_for("the removal to finish", lambda: not any(
        n.startswith(".trash-") for n in os.listdir(root)), 5)


def finished_push(s, repository, stage):
    """The run a push to repository starts, once finished, and stage's log."""
    status, body = s.post_hook("push", s.push_payload(repository))
    assert status == 202, (status, body)
    run_id = body["runs"][0]
    return s.wait_run(run_id, timeout=30), s.log(run_id, stage)


def test_a_worker_leaves_alone_the_run_another_worker_runs_a_stage_of(ws_stack):
    # The build worker, idle, sweeps every second while the test stage runs.
    run, lines = finished_push(ws_stack, SHARED_REPO, "test")
    assert run["status"] == "succeeded", (run, lines)
    assert any(l["line"] == "content of the third commit" for l in lines), lines


def test_a_checkout_git_fails_fails_the_stage_with_gits_words_and_the_worker_goes_on(ws_stack):
    s = ws_stack
    worker = [p for p in s.procs if p.name.startswith("worker")][0]
    status, body = s.post_hook("push", s.push_payload(GONE_REPO))
    assert status == 202, (status, body)
    run_id = body["runs"][0]
    run = s.wait_run(run_id, timeout=30)
    assert run["status"] == "failed", run
    error = run["stages"]["build"]["error"]
    # git's reason, not the advice it gives after it.
    assert error.startswith("checkout failed: git clone --mirror failed (exit 128): fatal: "), \
        error
    assert "no-such-repo.git" in error, error
    lines = s.log(run_id, "build")
    said = [l["line"] for l in lines if l["stream"] == "stderr"]
    assert any(line.startswith("fatal: ") for line in said), lines
    assert lines[-1] == dict(lines[-1], stream="system", line=error), lines
    assert worker.alive()

    # A commit the repository does not have: fetched, then not found.
    status, body = s.post_hook("push", s.push_payload(SLOW_WS_REPO, after="1" * 40))
    assert status == 202, (status, body)
    run = s.wait_run(body["runs"][0], timeout=30)
    assert run["status"] == "failed", run
    assert run["stages"]["build"]["error"] == "checkout failed: commit %s not found in %s" % (
        "1" * 40, s.repo.url), run
    assert worker.alive()

    status, body = s.post_hook("push", s.push_payload(SLOW_WS_REPO))
    assert status == 202, (status, body)
    assert s.wait_run(body["runs"][0], timeout=30)["status"] == "succeeded"


def test_a_token_in_the_checkout_url_is_not_in_the_stage_log(ws_stack):
    run, lines = finished_push(ws_stack, TOKEN_REPO, "build")
    assert run["status"] == "failed", run
    assert lines[0]["line"].startswith("checking out https://***@127.0.0.1:"), lines
    assert "ghp_notshown" not in repr(lines) + repr(run), (lines, run)


@pytest.fixture(scope="module")
def hurried_stack():
    yield from started_stack("sluice-ws-hurried-", pipelines, workers=(("build", 1),),
                             extra_settings={"worker": {"checkout_timeout": "1ms"}})


def test_worker_checkout_timeout_bounds_the_checkout(hurried_stack):
    s = hurried_stack
    status, body = s.post_hook("push", s.push_payload(SLOW_WS_REPO))
    assert status == 202, (status, body)
    run = s.wait_run(body["runs"][0], timeout=30)
    assert run["status"] == "failed", run
    assert run["stages"]["build"]["error"] == "checkout failed: checkout timed out after 1 ms", run
