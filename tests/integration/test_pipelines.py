"""Pipeline matching and stage graphs: one run per matching pipeline whose
secret verified, tag globs and the "!" globs that exclude, a trigger of
tags alone, pull request base
branches, a DAG of stages and a stage that runs past its timeout."""

from datetime import datetime

import pytest

from conftest import (APP_REPO, MULTI_REPO, OTHER_SECRET, REFS_REPO, RELEASES_REPO, SLOW_REPO,
                      git)


def t(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_dag_order(run):
    st = run["stages"]
    assert set(st) == {"build", "unit", "lint", "report"}, run
    for name, stage in st.items():
        assert stage["status"] == "succeeded" and stage["exit_code"] == 0, (name, run)
    for name in ("unit", "lint"):
        assert t(st["build"]["finished"]) <= t(st[name]["started"]), run
        assert t(st[name]["finished"]) <= t(st["report"]["started"]), run


def test_one_run_per_pipeline_whose_secret_verified(stack):
    status, body = stack.post_hook("push", stack.push_payload(MULTI_REPO))
    assert status == 202 and len(body["runs"]) == 2, (status, body)
    runs = [stack.wait_run(r) for r in body["runs"]]
    assert sorted(r["pipeline"] for r in runs) == ["multi-a", "multi-b"], runs
    for run in runs:
        assert run["status"] == "succeeded", run
        assert_dag_order(run)
        assert "built " + run["pipeline"] in [e["line"] for e in stack.log(run["id"], "build")]
        assert "lint lint" in [e["line"] for e in stack.log(run["id"], "lint")]


def test_a_pipeline_with_its_own_secret_is_the_only_one_its_signature_starts(stack):
    status, body = stack.post_hook("push", stack.push_payload(MULTI_REPO), secret=OTHER_SECRET)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = stack.wait_run(body["runs"][0])
    assert run["pipeline"] == "multi-other" and run["status"] == "succeeded", run


def test_push_of_a_tag_matching_the_tag_globs_builds_it(stack):
    ref = "refs/tags/v1.2.3"
    status, body = stack.post_hook("push", stack.push_payload(REFS_REPO, ref=ref))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = stack.wait_run(body["runs"][0])
    assert run["status"] == "succeeded" and run["ref"] == ref, run
    assert ref in [e["line"] for e in stack.log(run["id"], "build")]


def test_push_of_an_annotated_tag_builds_the_commit_it_points_to(stack):
    # after is the new value of the ref: for an annotated tag, the tag
    # object; GitHub sends the commit it points to as head_commit.
    git(stack.repo.path, "tag", "-a", "v2.0.0", "-m", "release 2.0.0", stack.repo.second)
    tag_object = git(stack.repo.path, "rev-parse", "refs/tags/v2.0.0")
    assert tag_object != stack.repo.second
    p = stack.push_payload(REFS_REPO, ref="refs/tags/v2.0.0", after=tag_object)
    p["before"], p["created"] = "0" * 40, True
    p["head_commit"] = {"id": stack.repo.second, "tree_id": "0" * 40, "distinct": True,
                        "message": "second", "timestamp": "2024-01-01T00:00:00Z"}
    status, body = stack.post_hook("push", p)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = stack.wait_run(body["runs"][0])
    assert run["status"] == "succeeded" and run["sha"] == stack.repo.second, run


def test_push_of_a_tag_not_matching_the_tag_globs_starts_no_run(stack):
    before = stack.run_count()
    status, body = stack.post_hook("push", stack.push_payload(REFS_REPO, ref="refs/tags/nope"))
    assert status == 202 and body["runs"] == [] and body["reason"], (status, body)
    assert stack.run_count() == before


@pytest.mark.parametrize("ref", ["refs/heads/dependabot/npm/left-pad",
                                 "refs/tags/v1.3.0-rc1"])
def test_push_of_a_ref_a_negated_glob_excludes_starts_no_run(stack, ref):
    before = stack.run_count()
    status, body = stack.post_hook("push", stack.push_payload(REFS_REPO, ref=ref))
    assert status == 202 and body["runs"] == [] and body["reason"], (status, body)
    assert stack.run_count() == before


def test_a_trigger_listing_tags_alone_builds_no_branch_push(stack):
    """As on GitHub Actions: a push filter naming tags only leaves branches
    out; a pull request, which has no tag, is matched by its events."""
    before = stack.run_count()
    status, body = stack.post_hook("push", stack.push_payload(RELEASES_REPO,
                                                              ref="refs/heads/feature/x"))
    assert status == 202 and body["runs"] == [] and body["reason"], (status, body)
    assert stack.run_count() == before
    status, body = stack.post_hook("push", stack.push_payload(RELEASES_REPO,
                                                              ref="refs/tags/v3.0.0"))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    assert stack.wait_run(body["runs"][0])["status"] == "succeeded"
    status, body = stack.post_hook("pull_request", stack.pr_payload(RELEASES_REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    assert stack.wait_run(body["runs"][0])["status"] == "succeeded"


def test_pull_request_reopened_builds(stack):
    payload = stack.pr_payload(APP_REPO)
    payload["action"] = "reopened"
    status, body = stack.post_hook("pull_request", payload)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = stack.wait_run(body["runs"][0])
    assert run["status"] == "succeeded" and run["sha"] == stack.repo.second, run


def test_pull_request_into_a_branch_not_matched_starts_no_run(stack):
    payload = stack.pr_payload(APP_REPO)
    payload["pull_request"]["base"]["ref"] = "develop"
    before = stack.run_count()
    status, body = stack.post_hook("pull_request", payload)
    assert status == 202 and body["runs"] == [] and body["reason"], (status, body)
    assert stack.run_count() == before


def test_stage_past_its_timeout_is_timed_out_and_fails_the_run(stack):
    status, body = stack.post_hook("push", stack.push_payload(SLOW_REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = stack.wait_run(body["runs"][0], timeout=30)
    assert run["status"] == "failed", run
    build = run["stages"]["build"]
    assert build["status"] == "timed_out", run
    # timeout 1s plus kill_grace 1s, far from the 30 s the command would take.
    assert (t(build["finished"]) - t(build["started"])).total_seconds() < 10, run
    assert run["stages"]["test"]["status"] == "skipped", run
    assert run["stages"]["test"]["started"] is None, run
    assert "sleeping" in [e["line"] for e in stack.log(run["id"], "build")]
