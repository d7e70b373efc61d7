"""Pull requests: whose code runs with what.

A pull request's run checks a change; it is not deployed: its run records
the pipeline without environments, so it is never promoted and never
supersedes a release waiting for one. A pull request from another
repository (a fork, whose author need not be trusted) runs without the
pipeline's secrets unless the pipeline says `forks: with-secrets`, or not
at all with `forks: skip`; one from a fork since deleted (head.repo null)
counts as from a fork."""

import pytest

from conftest import pipeline, started_stack, wait_for

TOKEN = "tok-Pr9wQ2xL7mN4"
APP = "sluice-it/pr-app"
SKIP = "sluice-it/pr-skip"
TRUST = "sluice-it/pr-trust"
WITHHELD = ("the pipeline's secrets are withheld from this run: a pull request from a fork "
            "(trigger.github.forks)")


def pipelines(repo, root):
    def p(name, repository, forks=None):
        d = pipeline(name, repository, events=["push", "pull_request"], branches=["main", "master"],
                     checkout=repo.url,
                     stages={"build": {"sh": 'echo "token=${TOKEN:-none}"'}})
        d["secrets"] = {"TOKEN": "token"}
        if forks:
            d["trigger"]["github"]["forks"] = forks
        return d

    app = p("pr-app", APP)
    # An approval keeps a pushed release waiting at development.
    app["environments"] = {"development": {"approval": "required",
                                           "deploy": {"sh": "echo deployed"}}}
    return {"app.yaml": app, "skip.yaml": p("pr-skip", SKIP, "skip"),
            "trust.yaml": p("pr-trust", TRUST, "with-secrets")}


@pytest.fixture(scope="module")
def prstack():
    yield from started_stack("sluice-pr-", pipelines, workers=(("build,deploy", 2),),
                             extra_secrets={"token": TOKEN + "\n"})


def run_of(stack, payload):
    status, body = stack.post_hook("pull_request", payload)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    return stack.wait_run(body["runs"][0], timeout=60)


def build_log(stack, run):
    return [(l["stream"], l["line"]) for l in stack.log(run["id"], "build")]


def test_a_pull_request_from_a_branch_gets_the_secrets_and_no_environment(prstack):
    run = run_of(prstack, prstack.pr_payload(APP))
    assert run["status"] == "succeeded", run
    got = build_log(prstack, run)
    assert ("stdout", "token=[masked]") in got, got
    assert not any(line == WITHHELD for _, line in got), got
    assert not run.get("environments"), run
    assert sorted(run["stages"]) == ["build"], run


@pytest.mark.parametrize("fork", ["someone/pr-app", None], ids=["fork", "deleted fork"])
def test_a_pull_request_from_a_fork_runs_without_secrets_and_says_so(prstack, fork):
    run = run_of(prstack, prstack.pr_payload(APP, fork=fork))
    assert run["status"] == "succeeded", run
    got = build_log(prstack, run)
    assert ("stdout", "token=none") in got, got
    assert ("system", WITHHELD) in got, got
    assert not run.get("environments"), run


def test_forks_skip_starts_no_run_and_says_why(prstack):
    before = prstack.run_count()
    status, body = prstack.post_hook("pull_request", prstack.pr_payload(SKIP, fork="x/pr-skip"))
    assert status == 202, (status, body)
    assert body["runs"] == [], body
    assert "fork" in body["reason"] and "forks: skip" in body["reason"], body
    assert prstack.run_count() == before
    # The same pipeline builds its own branches' pull requests.
    assert run_of(prstack, prstack.pr_payload(SKIP))["status"] == "succeeded"


def test_forks_with_secrets_runs_a_forks_pull_request_with_them(prstack):
    run = run_of(prstack, prstack.pr_payload(TRUST, fork="friend/pr-trust"))
    assert run["status"] == "succeeded", run
    assert ("stdout", "token=[masked]") in build_log(prstack, run)


def test_a_pull_request_never_supersedes_a_release_waiting_for_its_environment(prstack):
    status, body = prstack.post_hook("push", prstack.push_payload(APP))
    assert status == 202, (status, body)
    release = body["runs"][0]

    def waiting():
        env = prstack.run(release).get("environments", {}).get("development", {})
        return env.get("status") == "waiting_approval"
    wait_for("the pushed run to wait for its approval", waiting, 60)

    for fork in (False, "someone/pr-app"):
        assert run_of(prstack, prstack.pr_payload(APP, fork=fork))["status"] == "succeeded"
    assert waiting(), prstack.run(release)
