"""POST /hooks/github: what each GitHub delivery is answered, and that only
the deliveries that should start a run do."""

import json
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (APP_REPO, HOOK_ID, REFS_REPO, fixture_payload, pipeline, sign,
                      started_stack)
from harness import RedisMonitor, scaled

# Pipelines of one repository, one cloning the payload's clone_url, the
# other its own checkout.url.
CLONE_REPO = "sluice-it/clone"


def assert_error(status, body, expected):
    assert status == expected, (status, body)
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    assert isinstance(body["error"].get("code"), str) and body["error"]["code"], body
    assert isinstance(body["error"].get("message"), str) and body["error"]["message"], body


def assert_no_run(stack, before, status, body):
    assert status == 202, (status, body)
    assert body["runs"] == [], body
    assert isinstance(body.get("reason"), str) and body["reason"], body
    assert stack.run_count() == before


def adapted(name):
    p = fixture_payload(name)
    p["repository"]["full_name"] = APP_REPO
    return p


def test_ping_answers_200_and_starts_nothing(stack):
    before = stack.run_count()
    status, body = stack.post_hook("ping", adapted("ping-payload.json"))
    assert status == 200, (status, body)
    assert body["ok"] is True and body["event"] == "ping", body
    assert stack.run_count() == before


def test_ping_with_a_bad_signature_is_401(stack):
    status, body = stack.post_hook("ping", adapted("ping-payload.json"), secret="not-the-secret")
    assert_error(status, body, 401)


@pytest.mark.parametrize("event,fixture", [
    ("create", "create-payload.json"),
    ("delete", "delete-payload.json"),
    ("release", "release-published.payload.json"),
    ("workflow_dispatch", "workflow_dispatch-payload.json"),
])
def test_events_the_pipeline_does_not_listen_to_start_no_run(stack, event, fixture):
    before = stack.run_count()
    status, body = stack.post_hook(event, adapted(fixture))
    assert_no_run(stack, before, status, body)


def test_unknown_event_starts_no_run(stack):
    before = stack.run_count()
    status, body = stack.post_hook("issues", {"action": "opened", "repository": {
        "full_name": APP_REPO}})
    assert_no_run(stack, before, status, body)


def test_the_fixtures_tag_deletion_push_starts_no_run(stack):
    p = adapted("push-payload.json")
    assert p["deleted"] is True
    before = stack.run_count()
    status, body = stack.post_hook("push", p)
    assert_no_run(stack, before, status, body)


# A push of "after" all zeros deleted its ref, whether or not it says so.
@pytest.mark.parametrize("deleted", [True, False, "absent"])
def test_a_deleted_branch_that_the_pipeline_matches_starts_no_run(stack, deleted):
    p = stack.push_payload(APP_REPO)
    p["deleted"] = deleted
    if deleted == "absent":
        del p["deleted"]
    p["before"], p["after"] = p["after"], "0" * 40
    p["head_commit"] = None
    before = stack.run_count()
    status, body = stack.post_hook("push", p)
    assert_no_run(stack, before, status, body)
    assert body["reason"] == "the push deleted its ref", body


def test_a_push_whose_head_commit_says_skip_ci_starts_no_run(stack):
    p = stack.push_payload(APP_REPO)
    p["head_commit"] = {"id": p["after"], "message": "docs: fix a typo [skip ci]"}
    before = stack.run_count()
    status, body = stack.post_hook("push", p)
    assert_no_run(stack, before, status, body)
    assert "skip CI" in body["reason"], body


@pytest.mark.parametrize("ref", ["refs/heads/feature/x", "refs/tags/v1.0.0"])
def test_push_to_a_branch_or_tag_not_matched_starts_no_run(stack, ref):
    before = stack.run_count()
    status, body = stack.post_hook("push", stack.push_payload(APP_REPO, ref=ref))
    assert_no_run(stack, before, status, body)


# The refs pipeline builds every branch and "v" tag.
@pytest.mark.parametrize("ref", [
    "refs/heads/", "refs/tags/", "refs/heads/a\nb", "refs/heads/a\u0001b", "refs/heads/a b",
    "refs/heads/../x", "refs/heads//x", "refs/tags/v1.lock", "refs/heads/" + "y" * 200000])
def test_a_push_to_a_ref_git_would_not_make_is_400_and_starts_no_run(stack, ref):
    before = stack.run_count()
    status, body = stack.post_hook("push", stack.push_payload(REFS_REPO, ref=ref))
    assert_error(status, body, 400)
    assert stack.run_count() == before


def test_a_push_of_a_long_branch_git_makes_starts_a_run(stack):
    ref = "refs/heads/" + "/".join(["\u00e9" * 127] * 4)
    status, body = stack.post_hook("push", stack.push_payload(REFS_REPO, ref=ref))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    assert stack.run(body["runs"][0])["ref"] == ref


@pytest.mark.parametrize("number,base,sha", [
    (0, "main", None), (-1, "main", None), (1, "", None), (1, "a..b", None),
    (1, "main", "0" * 40), (1, "main", "0" * 64), (1, "main", "f" * 39)])
def test_a_pull_request_of_no_number_head_commit_or_base_branch_is_400(stack, number, base, sha):
    p = stack.pr_payload(APP_REPO, sha=sha)
    p["number"] = number
    p["pull_request"]["base"]["ref"] = base
    before = stack.run_count()
    status, body = stack.post_hook("pull_request", p)
    assert_error(status, body, 400)
    assert stack.run_count() == before


def test_push_of_a_repository_no_pipeline_builds_starts_no_run(stack):
    before = stack.run_count()
    status, body = stack.post_hook("push", stack.push_payload("someone/else"))
    assert_no_run(stack, before, status, body)


def test_pull_request_closed_starts_no_run(stack):
    p = stack.pr_payload(APP_REPO)
    p["action"] = "closed"
    before = stack.run_count()
    status, body = stack.post_hook("pull_request", p)
    assert_no_run(stack, before, status, body)


@pytest.mark.parametrize("how", ["wrong secret", "tampered body", "not hex", "sha1 only"])
def test_bad_signature_is_401_and_starts_no_run(stack, how):
    payload = json.dumps(stack.push_payload(APP_REPO)).encode()
    signature = None
    if how == "wrong secret":
        signature = sign("not-the-secret", payload)
    elif how == "tampered body":
        signature = sign(stack.secret, payload)
        payload = payload + b" "  # still valid JSON, no longer what was signed
    elif how == "not hex":
        signature = "sha256=" + "zz" * 32
    else:
        signature = "sha1=" + "0" * 40
    before = stack.run_count()
    status, body = stack.post_hook("push", payload, signature=signature)
    assert_error(status, body, 401)
    assert stack.run_count() == before


def test_missing_signature_is_401_and_starts_no_run(stack):
    before = stack.run_count()
    status, body = stack.post_hook("push", stack.push_payload(APP_REPO),
                                   omit=("X-Hub-Signature-256",))
    assert_error(status, body, 401)
    assert stack.run_count() == before


def test_same_delivery_twice_answers_the_same_runs_and_creates_one(stack):
    payload = stack.push_payload(APP_REPO)
    delivery = str(uuid.uuid4())
    before = stack.run_count()
    status, first = stack.post_hook("push", payload, delivery=delivery)
    assert status == 202 and len(first["runs"]) == 1, (status, first)
    assert not first.get("duplicate"), first
    status, second = stack.post_hook("push", payload, delivery=delivery)
    assert status == 202, (status, second)
    assert second["runs"] == first["runs"], (first, second)
    assert second.get("duplicate") is True, second
    assert stack.run_count() == before + 1
    assert stack.wait_run(first["runs"][0])["status"] == "succeeded"


def test_same_delivery_id_from_another_hook_is_a_new_delivery(stack):
    payload = stack.push_payload(APP_REPO)
    delivery = str(uuid.uuid4())
    status, first = stack.post_hook("push", payload, delivery=delivery)
    assert status == 202 and len(first["runs"]) == 1, (status, first)
    status, other = stack.post_hook("push", payload, delivery=delivery,
                                    hook_id=str(int(HOOK_ID) + 1))
    assert status == 202 and len(other["runs"]) == 1, (status, other)
    assert other["runs"] != first["runs"] and not other.get("duplicate"), (first, other)
    for run_id in first["runs"] + other["runs"]:
        assert stack.wait_run(run_id)["status"] == "succeeded"


def test_body_over_25_mib_is_413(stack):
    p = stack.push_payload(APP_REPO)
    p["padding"] = "x" * (26 * 1024 * 1024)
    body = json.dumps(p).encode()
    before = stack.run_count()
    status, answer = stack.post_hook("push", body)
    # libevent refuses the body as it arrives, before it is buffered, so the
    # answer is its own short page rather than sluice's JSON error.
    assert status == 413
    assert "Request Entity Too Large" in answer.get("_raw", "")
    assert stack.run_count() == before
    # The agent still serves after refusing it.
    assert stack.get("/healthz")[0] == 200


def test_truncated_json_is_400(stack):
    body = json.dumps(stack.push_payload(APP_REPO)).encode()
    before = stack.run_count()
    status, answer = stack.post_hook("push", body[: len(body) // 2])
    assert_error(status, answer, 400)
    assert stack.run_count() == before


@pytest.mark.parametrize("header", ["X-GitHub-Event", "X-GitHub-Delivery"])
def test_missing_github_header_is_400(stack, header):
    before = stack.run_count()
    status, answer = stack.post_hook("push", stack.push_payload(APP_REPO), omit=(header,))
    assert_error(status, answer, 400)
    assert stack.run_count() == before


def test_form_encoded_content_type_is_415(stack):
    before = stack.run_count()
    status, answer = stack.post_hook("push", stack.push_payload(APP_REPO),
                                     content_type="application/x-www-form-urlencoded")
    assert_error(status, answer, 415)
    assert stack.run_count() == before


def test_deliveries_arriving_during_a_redis_call_are_recorded_together_each_once(stack):
    """Group commit (agent/record.c): the agent keeps two calls of the
    intake script under way; while it waits for both, the deliveries that
    arrive gather and are recorded by one call; each is still answered on its
    own, a delivery sent twice within the batch still gets one run. Redis is
    held still with CLIENT PAUSE; a MONITOR connection sees each script call
    with its arguments."""

    def cli(*args):
        return subprocess.run(["redis-cli", "-p", str(stack.redis_port)] + list(args),
                              check=True, capture_output=True, text=True).stdout

    monitor = RedisMonitor(stack.redis_port)
    payload = stack.push_payload(APP_REPO)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    gathered = [str(uuid.uuid4()) for _ in range(12)]
    twice = gathered[0]
    answers = {}

    def post(delivery, slot):
        answers[slot] = stack.post_hook("push", payload, delivery=delivery)

    before = stack.run_count()
    # Held for less than the agent's Redis timeout (redis.timeout, 5 s), or
    # its call would fail on a slow machine.
    cli("CLIENT", "PAUSE", str(int(min(scaled(1.5), 4) * 1000)), "ALL")
    threads = []
    for delivery in (first, second):
        threads.append(threading.Thread(target=post, args=(delivery, delivery)))
        threads[-1].start()
        time.sleep(min(scaled(0.3), 1))  # its call is sent and held
    for i, delivery in enumerate(gathered + [twice]):
        threads.append(threading.Thread(target=post, args=(delivery, i)))
        threads[-1].start()
    for t in threads:
        t.join(30)
    seen = monitor.lines(scaled(1))
    monitor.close()

    assert all(status == 202 for status, _ in answers.values()), answers
    calls = [line for line in seen
             if '"EVALSHA"' in line and any(d in line for d in [first, second] + gathered)]
    assert len(calls) == 3, calls
    assert first in calls[0] and second in calls[1], calls
    assert all(d in calls[2] for d in gathered), calls
    runs = {slot: body["runs"] for slot, (_, body) in answers.items()}
    assert all(len(r) == 1 for r in runs.values()), runs
    # The delivery sent twice: one run, the second answer a duplicate of it.
    assert runs[0] == runs[len(gathered)], runs
    assert [answers[0][1].get("duplicate"), answers[len(gathered)][1].get("duplicate")].count(
        True) == 1, answers
    distinct = {r[0] for r in runs.values()}
    assert len(distinct) == 2 + len(gathered), runs
    assert stack.run_count() == before + len(distinct)
    for run_id in distinct:
        assert stack.wait_run(run_id)["status"] == "succeeded"


@pytest.fixture(scope="module")
def clonestack():
    """No worker: a run recorded is never cloned here."""
    def pipelines(repo, root):
        build = {"build": {"sh": "true"}}
        return {"payload.yaml": pipeline("payload-url", CLONE_REPO, branches=["main"],
                                         stages=build),
                "own.yaml": pipeline("own-url", CLONE_REPO, branches=["other"],
                                     checkout=repo.url, stages=build)}
    yield from started_stack("sluice-clone-", pipelines, workers=())


@pytest.mark.parametrize("url", [
    "file:///etc", "/srv/git/app.git", "../app", "git://example.com/app.git",
    "http://example.com/app.git", "ext::sh -c touch% /tmp/x", "https:///etc",
    "https://example.com/a b.git", "HTTPS://example.com/app.git", None,
    pytest.param("https://example.com/" + "a" * (2 << 20), id="https-2MiB"),
    pytest.param("https://example.com/" + "a" * 2029, id="https-2049B")])
def test_a_clone_url_the_workers_may_not_clone_is_400_and_records_nothing(clonestack, url):
    """A signed payload must not have the workers clone a local path (or
    use another transport): a pipeline without checkout.url clones the
    payload's clone_url, which must be https:// or ssh://."""
    p = clonestack.push_payload(CLONE_REPO)
    if url is None:
        del p["repository"]["clone_url"]
    else:
        p["repository"]["clone_url"] = url
    before = clonestack.run_count()
    status, body = clonestack.post_hook("push", p)
    assert_error(status, body, 400)
    assert "clone_url" in body["error"]["message"], body
    assert "payload-url" in body["error"]["message"], body
    assert clonestack.run_count() == before


@pytest.mark.parametrize("url", ["https://github.com/sluice-it/clone.git",
                                 "ssh://git@github.com/sluice-it/clone.git"])
def test_an_https_or_ssh_clone_url_is_cloned_by_a_pipeline_without_checkout_url(
        clonestack, url):
    p = clonestack.push_payload(CLONE_REPO)
    p["repository"]["clone_url"] = url
    status, body = clonestack.post_hook("push", p)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    assert clonestack.run(body["runs"][0])["pipeline"] == "payload-url"


def test_a_pipeline_with_its_own_checkout_url_ignores_the_clone_url(clonestack):
    p = clonestack.push_payload(CLONE_REPO, ref="refs/heads/other")
    p["repository"]["clone_url"] = clonestack.repo.url
    status, body = clonestack.post_hook("push", p)
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    assert clonestack.run(body["runs"][0])["pipeline"] == "own-url"
