"""The agent's read API and /healthz, with Redis up and with Redis gone."""

import os
import shutil
import tempfile
import time
import urllib.parse

import pytest

from conftest import (APP_REPO, RUN_STATUSES, LocalRepo, Stack, head_then_get, http_request,
                      pipeline)


def test_healthz_is_200_with_redis_up(stack):
    status, body = stack.get("/healthz")
    assert status == 200, body
    assert body["status"] == "ok", body


def test_runs_are_listed_newest_first_without_stages(stack, push_run, failed_run):
    runs = stack.runs()
    ids = [r["id"] for r in runs]
    assert push_run["id"] in ids and failed_run["id"] in ids
    created = [r["created"] for r in runs]
    assert created == sorted(created, reverse=True), created
    for r in runs:
        assert "stages" not in r, r
    listed = runs[ids.index(push_run["id"])]
    full = dict(stack.run(push_run["id"]))
    del full["stages"]
    assert listed == full


def test_runs_filter_by_pipeline_status_and_limit(stack, push_run, failed_run):
    failing = stack.runs("pipeline=failing&limit=500")
    assert failed_run["id"] in [r["id"] for r in failing]
    assert all(r["pipeline"] == "failing" for r in failing), failing
    failed = stack.runs("status=failed&limit=500")
    assert failed_run["id"] in [r["id"] for r in failed]
    assert push_run["id"] not in [r["id"] for r in failed]
    assert all(r["status"] == "failed" for r in failed), failed
    assert len(stack.runs("limit=1")) == 1


def test_an_empty_filter_or_cursor_is_none(stack, push_run, failed_run):
    """pipeline=, status=, ref= and before= with no value list every run
    from the newest, as an empty limit= gives the default."""
    everything = [r["id"] for r in stack.runs("limit=500")]
    assert push_run["id"] in everything and failed_run["id"] in everything
    for q in ("pipeline=", "status=", "ref=", "before=", "pipeline=&status=&ref=&before="):
        status, body = stack.get("/api/v1/runs?limit=500&" + q)
        assert status == 200, (q, body)
        assert [r["id"] for r in body["runs"]] == everything, q


def test_a_cursor_of_another_pipeline_s_run_is_a_400(stack, push_run, failed_run):
    """A run in the index of all runs but not in this pipeline's is no
    cursor of this listing: it used to page by that run's time."""
    other = push_run["id"]
    for key in ("before", "after"):
        status, body = stack.get("/api/v1/runs?pipeline=failing&%s=%s" % (key, other))
        assert status == 400, (status, body)
        assert body["error"]["message"] == "%s: no such run in this listing" % key, body
    status, body = stack.get("/api/v1/runs?pipeline=failing&before=%s" % failed_run["id"])
    assert status == 200, (status, body)
    assert failed_run["id"] not in [r["id"] for r in body["runs"]], body


def test_a_limit_that_is_no_whole_number_from_1_is_a_400(stack, push_run):
    """Neither the runs list nor a log takes a limit it cannot read as
    the page it asks for; one above the maximum gives the maximum."""
    log = "/api/v1/runs/%s/stages/build/log" % push_run["id"]
    for path in ("/api/v1/runs", log):
        for limit in ("abc", "0", "-1", "1x", "+2", " 2", "1.5", "0x10"):
            status, body = stack.get(path + "?limit=" + urllib.parse.quote(limit))
            assert status == 400, (path, limit, status, body)
            assert body["error"]["code"] == "bad_request", body
            assert "limit" in body["error"]["message"], body
        assert stack.get(path + "?limit=")[0] == 200
    assert len(stack.runs("limit=1")) == 1
    assert len(stack.runs("limit=99999999999999999999999")) == len(stack.runs("limit=500"))


def test_a_query_parameter_given_twice_cut_by_a_nul_or_not_utf8_is_a_400(stack, push_run):
    """Which of two limits, or which pipeline before a NUL, would be a
    guess: each is refused, naming what is wrong, as a value that is not
    UTF-8 is."""
    for query, message in (
            ("limit=5&limit=abc", "limit: given more than once"),
            ("limit=5&limit=5", "limit: given more than once"),
            ("pipeline=app&status=failed&pipeline=other", "pipeline: given more than once"),
            ("pipeline=app%00b", "the query holds an escaped NUL byte"),
            ("pipeline=%ff", "the query is not UTF-8")):
        status, body = stack.get("/api/v1/runs?" + query)
        assert (status, body["error"]) == (400, {"code": "bad_request", "message": message}), \
            (query, status, body)
    assert stack.get("/api/v1/runs?limit=5&pipeline=app")[0] == 200


def test_a_log_cursor_that_is_no_line_id_is_a_400_and_an_empty_one_is_none(stack, push_run):
    """after= is read as limit= is: a value not a line id (not a number, a
    sign, one past what Redis takes) is refused naming it, and an empty
    one pages from the first line, as none does."""
    log = "/api/v1/runs/%s/stages/build/log" % push_run["id"]
    for after in ("abc", "-5", "+5", " 5", "1.5", "99999999999999999999", "5-x"):
        status, body = stack.get(log + "?after=" + urllib.parse.quote(after, safe=""))
        assert status == 400, (after, status, body)
        assert body["error"] == {"code": "bad_request",
                                 "message": "after must be a log line id"}, body
    status, first = stack.get(log)
    assert status == 200 and first["lines"], first
    assert stack.get(log + "?after=") == (200, first)
    assert stack.get(log + "?after=&limit=") == (200, first)


def test_a_status_no_run_can_have_is_a_400(stack, failed_run):
    """A misspelt status is refused, not answered with an empty list as if
    no run had it; every status a run can have is a filter."""
    for bad in ("faild", "FAILED", "timed_out", "failed "):
        status, body = stack.get("/api/v1/runs?status=" + urllib.parse.quote(bad))
        assert status == 400, (bad, status, body)
        assert body["error"]["code"] == "bad_request", body
        assert "status: expected queued" in body["error"]["message"], body
    for good in RUN_STATUSES:
        status, body = stack.get("/api/v1/runs?status=" + good)
        assert status == 200, (good, status, body)
        assert all(r["status"] == good for r in body["runs"]), body
    assert failed_run["id"] in [r["id"] for r in stack.runs("status=failed&limit=500")]


def test_a_head_answer_is_its_headers_alone(stack, push_run):
    """HEAD gives GET's status and Content-Length and no body: a body after
    the headers would be taken as the next answer on the connection."""
    for path in ("/healthz", "/", "/assets/app.js", "/runs/" + push_run["id"], "/nothing",
                 "/api/v1/runs", "/api/v1/runs/" + push_run["id"],
                 "/api/v1/runs/r_doesnotexist"):
        status, _, raw = http_request(stack.agent_port, "GET", path)
        assert raw, path
        assert head_then_get(stack.agent_port, path) == (status, str(len(raw)), 200), path
    # Counted requests change the figures between two scrapes.
    status, length, after = head_then_get(stack.agent_port, "/metrics")
    assert (status, after) == (200, 200) and int(length) > 0, length


def assert_404(status, body):
    assert status == 404, (status, body)
    assert body["error"]["code"] and body["error"]["message"], body


def test_unknown_run_is_404(stack):
    assert_404(*stack.get("/api/v1/runs/r_doesnotexist"))
    assert_404(*stack.get("/api/v1/runs/r_doesnotexist/stages/build/log"))


def test_unknown_stage_log_is_404(stack, push_run):
    assert_404(*stack.get("/api/v1/runs/%s/stages/nosuchstage/log" % push_run["id"]))


TRIGGER = "/api/v1/pipelines/app/trigger"
VALIDATE = "/api/v1/pipelines/validate?name=x.yaml"
GOOD_PIPELINE = (b"trigger: {github: {repository: a/b, secret_file: webhook-secret}}\n"
                 b"stages:\n  build: {run: [make]}\n")


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example", "Content-Type": "text/plain"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "same-site", "Origin": "https://evil.example"},
    # The Host a page of another site sent does not make it ours.
    {"Sec-Fetch-Site": "cross-site"},
])
def test_a_post_sent_by_a_page_of_another_site_is_refused(stack, headers):
    """Without api.tokens_file the API is open: a page of another site the
    user visits could otherwise trigger, cancel or approve (a form or a
    no-cors fetch with a text/plain body needs no preflight). It gets a 403
    and nothing is recorded."""
    before = stack.run_count()
    status, body, _ = http_request(stack.agent_port, "POST", TRIGGER, b'{"ref":"main"}', headers)
    assert status == 403 and body["error"]["code"] == "forbidden", (status, body)
    status, body, _ = http_request(stack.agent_port, "POST", VALIDATE, GOOD_PIPELINE, headers)
    assert status == 403, (status, body)
    assert stack.run_count() == before


@pytest.mark.parametrize("headers", [
    {},  # not a browser: curl, sluicectl
    {"Sec-Fetch-Site": "same-origin", "Origin": "https://proxy.example"},
    {"Sec-Fetch-Site": "none"},
    {"Origin": "http://127.0.0.1:%d"},  # a browser without Sec-Fetch-*: Origin is Host
])
def test_a_post_of_this_site_or_of_no_browser_is_taken(stack, headers):
    headers = {k: v % stack.agent_port if "%d" in v else v for k, v in headers.items()}
    status, body, _ = http_request(stack.agent_port, "POST", VALIDATE, GOOD_PIPELINE, headers)
    assert status == 200 and body["valid"] is True, (status, body)


@pytest.fixture(scope="module")
def redisless():
    """An agent (no worker) whose Redis has been stopped."""
    root = tempfile.mkdtemp(prefix="sluice-it-noredis-")
    repo = LocalRepo(os.path.join(root, "repo"))
    s = Stack(root, repo, {"app.yaml": pipeline("app", APP_REPO, checkout=repo.url, stages={
        "build": {"run": ["true"]}})}, workers=(), extra_settings={"redis": {"timeout": "1s"}})
    try:
        s.start()
    except BaseException as e:
        s.stop()
        raise RuntimeError("the stack did not start: %s\n%s" % (e, s.report())) from None
    s.redis.stop()
    s.procs.remove(s.redis)
    yield s
    s.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_healthz_is_503_degraded_without_redis(redisless):
    deadline = time.monotonic() + 10
    while True:
        status, body = redisless.get("/healthz")
        if status != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 503, body
    assert body["status"] == "degraded", body


def test_webhook_is_503_without_redis(redisless):
    status, body = redisless.post_hook("push", redisless.push_payload(APP_REPO))
    assert status == 503, (status, body)
    assert body["error"]["code"], body
