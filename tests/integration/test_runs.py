"""Runs from webhook to finished stages: what is built, what the stages
print, how a failing stage ends a run, and that payload text never reaches a
shell."""

import os
from datetime import datetime

import pytest

from conftest import (APP_REPO, ATTEMPT_STATUSES, FAILING_REPO, REFS_REPO, RUN_STATUSES,
                      STAGE_STATUSES, git_ref_ok)


def rfc3339(value):
    assert isinstance(value, str), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def log_text(lines):
    for entry in lines:
        assert set(entry) >= {"id", "time", "stream", "line"}, entry
        assert entry["stream"] in ("stdout", "stderr", "system"), entry
        rfc3339(entry["time"])
    return [entry["line"] for entry in lines]


def assert_stage_done(stage, status, exit_code):
    assert stage["status"] == status, stage
    assert stage["exit_code"] == exit_code, stage
    assert stage["attempt"] == 1, stage
    assert rfc3339(stage["started"]) <= rfc3339(stage["finished"]), stage


def test_push_builds_and_tests_the_pushed_commit(stack, push_run):
    run = push_run
    assert run["status"] == "succeeded", run
    assert run["pipeline"] == "app"
    assert run["repository"] == APP_REPO
    assert run["event"] == "push"
    assert run["ref"] == "refs/heads/main"
    assert run["sha"] == stack.repo.head
    assert rfc3339(run["created"]) <= rfc3339(run["finished"])
    assert set(run["stages"]) == {"build", "test"}, run
    build, test = run["stages"]["build"], run["stages"]["test"]
    assert_stage_done(build, "succeeded", 0)
    assert_stage_done(test, "succeeded", 0)
    assert rfc3339(build["finished"]) <= rfc3339(test["started"]), run


def test_push_build_log_shows_the_expanded_arguments_and_checkout(stack, push_run):
    lines = log_text(stack.log(push_run["id"], "build"))
    assert "building %s on refs/heads/main" % stack.repo.head in lines, lines
    assert "greeting hello and hello" in lines, lines
    assert "content of the third commit" in lines, lines
    assert "only the second commit has this file" not in lines, lines


def test_push_test_log_comes_from_the_repositorys_script(stack, push_run):
    lines = log_text(stack.log(push_run["id"], "test"))
    short = [l[len("tests pass for "):] for l in lines if l.startswith("tests pass for ")]
    assert len(short) == 1 and len(short[0]) >= 7, lines
    assert stack.repo.head.startswith(short[0]), lines


def test_log_cursor_past_the_last_line_returns_nothing(stack, push_run):
    lines = stack.log(push_run["id"], "build")
    last = lines[-1]["id"]
    status, body = stack.get("/api/v1/runs/%s/stages/build/log?after=%s" % (push_run["id"], last))
    assert status == 200, body
    assert body["lines"] == [] and body["next"] == last, body


def test_log_limit_pages_through_the_lines(stack, push_run):
    everything = stack.log(push_run["id"], "build")
    status, body = stack.get("/api/v1/runs/%s/stages/build/log?limit=1" % push_run["id"])
    assert status == 200, body
    assert body["lines"] == everything[:1], body
    assert body["next"] == everything[0]["id"], body


@pytest.mark.parametrize("fixture", ["pull_request-opened.payload.json",
                                     "pull_request-synchronize.payload.json"])
def test_pull_request_builds_the_head_commit(stack, fixture):
    payload = stack.pr_payload(APP_REPO, fixture=fixture, sha=stack.repo.second)
    status, body = stack.post_hook("pull_request", payload)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = stack.wait_run(body["runs"][0])
    assert run["status"] == "succeeded", run
    assert run["event"] == "pull_request"
    assert run["sha"] == stack.repo.second != stack.repo.head
    assert run["ref"] == "refs/pull/%d/head" % payload["number"]
    lines = log_text(stack.log(run["id"], "build"))
    assert "content of the second commit" in lines, lines
    assert "only the second commit has this file" in lines, lines
    assert "content of the third commit" not in lines, lines


def test_failing_stage_fails_the_run_and_skips_its_dependants(stack, failed_run):
    run = failed_run
    assert run["status"] == "failed", run
    assert run["repository"] == FAILING_REPO
    assert run["finished"] is not None
    assert_stage_done(run["stages"]["build"], "failed", 3)
    test = run["stages"]["test"]
    assert test["status"] == "skipped", run
    assert test["started"] is None and test["exit_code"] is None, run
    assert "about to fail" in log_text(stack.log(run["id"], "build"))
    assert log_text(stack.log(run["id"], "test")) == []


def files_named(name, roots):
    found = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            found += [os.path.join(dirpath, f) for f in filenames + dirnames if f == name]
    return found


# "$(touch pwned)" cannot be a git branch (no spaces in ref names): its push
# is refused as it arrives. The ${IFS} forms are valid branch names, created
# in the repository as well, and run.
@pytest.mark.parametrize("branch", ["$(touch pwned)", "$(touch${IFS}pwned)", "`touch${IFS}pwned`"])
def test_branch_name_is_never_run_by_a_shell(stack, branch):
    roots = [stack.root, stack.state_dir, os.getcwd()]
    ref = "refs/heads/" + branch
    if not git_ref_ok(branch):
        status, body = stack.post_hook("push", stack.push_payload(REFS_REPO, ref=ref))
        assert status == 400, (status, body)
        assert files_named("pwned", roots) == []
        return
    sha = stack.repo.branch(branch)
    status, body = stack.post_hook("push", stack.push_payload(REFS_REPO, ref=ref, after=sha))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = stack.wait_run(body["runs"][0])
    assert run["status"] == "succeeded", run
    assert run["ref"] == ref and run["sha"] == sha, run
    assert ref in log_text(stack.log(run["id"], "build"))
    assert files_named("pwned", roots) == []


def test_run_statuses_are_from_the_contract(stack, push_run, failed_run):
    for run in (push_run, failed_run):
        assert run["status"] in RUN_STATUSES
        for stage in run["stages"].values():
            assert stage["status"] in STAGE_STATUSES
            assert all(a["status"] in ATTEMPT_STATUSES for a in stage["attempts"]), stage
