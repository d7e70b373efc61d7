"""The API with bearer tokens: the role matrix, public reads, api.call
events, tokens kept out of every log, TLS; a stage's log as Server-Sent
Events (live, resumable); runs paging and filters; validate; 404/405."""

import glob
import hashlib
import json
import os
import pty
import secrets
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
import http.client
import urllib.parse

import pytest

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from conftest import (binary, free_port, http_request, pipeline, recv_until_closed,  # noqa: E402
                      started_stack, wait_for)
from kafkawire import Client, envelopes  # noqa: E402
from resp import Redis  # noqa: E402

REPO = "sluice-it/access"
TICKS = 20
TOKENS = {name: "slc_" + secrets.token_hex(32) for name in ("reader", "approver", "boss")}
ROLES = {"reader": "read", "approver": "approve", "boss": "admin"}
TICKER = 'for i in $(seq 1 %d); do echo "tick $i"; sleep 0.1; done' % TICKS


def pipelines(repo, root):
    with open(os.path.join(root, "tokens"), "w") as f:
        f.write("# name role sha256\n")
        for name, token in TOKENS.items():
            f.write("%s %s %s\n" % (name, ROLES[name], hashlib.sha256(token.encode()).hexdigest()))
    return {"access.yaml": pipeline("access", REPO, checkout=repo.url, stages={
        "ticker": {"kind": "build", "sh": TICKER, "checkout": False},
    })}


@pytest.fixture(scope="module")
def locked():
    yield from started_stack("sluice-access-", pipelines, workers=(("build", 2),),
                             extra_settings={"api": {"tokens_file": "tokens",
                                                     "public_reads": False}})


def call(stack, method, path, token=None, body=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    status, parsed, _ = http_request(stack.agent_port, method, path, data, h)
    return status, parsed


def assert_error(status, body, want):
    assert status == want, (status, body)
    assert body["error"]["code"] and body["error"]["message"], body


def start_run(stack):
    status, body = stack.post_hook("push", stack.push_payload(REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    return body["runs"][0]


def wait(stack, run_id, token):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status, run = call(stack, "GET", "/api/v1/runs/" + run_id, TOKENS[token])
        assert status == 200, (status, run)
        if run["status"] not in ("queued", "running", "waiting"):
            return run
        time.sleep(0.1)
    raise AssertionError("run %s did not finish" % run_id)


# --- auth matrix --------------------------------------------------------------

def test_no_token_and_wrong_token_are_401(locked):
    for method, path in (("GET", "/api/v1/runs"), ("POST", "/api/v1/runs/r_x/cancel")):
        status, body = call(locked, method, path)
        assert_error(status, body, 401)
        status, body = call(locked, method, path, "slc_" + "0" * 64)
        assert_error(status, body, 401)
        status, body = call(locked, method, path, headers={"Authorization": "Basic Zm9vOmJhcg=="})
        assert_error(status, body, 401)


def test_read_may_not_mutate_and_approve_may_not_cancel(locked):
    status, body = call(locked, "GET", "/api/v1/runs", TOKENS["reader"])
    assert status == 200, body
    for token in ("reader", "approver"):
        status, body = call(locked, "POST", "/api/v1/runs/r_x/cancel", TOKENS[token])
        assert_error(status, body, 403)
        assert "admin" in body["error"]["message"], body
    status, body = call(locked, "POST", "/api/v1/pipelines/access/trigger", TOKENS["reader"],
                        {"ref": "main"})
    assert_error(status, body, 403)
    status, body = call(locked, "POST", "/api/v1/runs/r_x/environments/prod/approve",
                        TOKENS["reader"], {"reason": "x"})
    assert_error(status, body, 403)


def test_approve_may_decide_and_admin_may_do_everything(locked):
    # Past the token check, the call reaches its handler: an unknown run.
    status, body = call(locked, "POST", "/api/v1/runs/r_x/environments/prod/approve",
                        TOKENS["approver"], {"reason": "looks good"})
    assert_error(status, body, 404)
    status, body = call(locked, "POST", "/api/v1/runs/r_x/cancel", TOKENS["boss"])
    assert_error(status, body, 404)
    run_id = start_run(locked)
    status, body = call(locked, "POST", "/api/v1/runs/%s/cancel" % run_id, TOKENS["boss"])
    assert status == 202, body
    assert body["status"] == "cancelled", body


def test_mutating_calls_are_api_call_events_with_the_token_name(locked):
    run_id = start_run(locked)
    wait(locked, run_id, "reader")
    status, _ = call(locked, "POST", "/api/v1/runs/%s/cancel" % run_id, TOKENS["boss"])
    assert status == 409

    def found():
        c = Client(locked.brokers)
        try:
            for part in range(4):
                offset = 0
                while True:
                    err, records = c.fetch("sluice.events", offset, part)
                    fresh = [r for r in records if r[0] >= offset] if not err else []
                    if not fresh:
                        break
                    for off, _, value in fresh:
                        e = json.loads(value)
                        if e["type"] == "dev.sluice.api.call" and e["data"].get("run") == run_id:
                            return e
                        offset = off + 1
        finally:
            c.close()
        return None
    event = wait_for("the api.call event", found, 15)
    assert event["data"]["token"] == "boss", event
    assert event["data"]["method"] == "POST", event
    assert event["data"]["path"] == "/api/v1/runs/%s/cancel" % run_id, event
    assert event["data"]["status"] == 409, event
    assert event["subject"] == "runs/" + run_id, event


def test_healthz_metrics_and_webhook_need_no_token(locked):
    assert call(locked, "GET", "/healthz")[0] == 200
    assert call(locked, "GET", "/metrics")[0] == 200
    start_run(locked)


def test_sluicectl_sends_the_token_from_a_file_or_the_environment(locked, tmp_path):
    f = tmp_path / "token"
    f.write_text(TOKENS["reader"] + "\n")
    r = locked.ctl("runs", "--token-file", str(f))
    assert r.returncode == 0, r.stderr
    r = locked.ctl("runs", env={"SLUICE_TOKEN": TOKENS["reader"]})
    assert r.returncode == 0, r.stderr
    # Pasted with a blank before it, or kept with its file's or secret's
    # newline: still the token.
    f.write_text("  %s\r\n" % TOKENS["reader"])
    r = locked.ctl("runs", "--token-file", str(f))
    assert r.returncode == 0, r.stderr
    for value in ("\t%s" % TOKENS["reader"], "%s\n" % TOKENS["reader"]):
        r = locked.ctl("runs", env={"SLUICE_TOKEN": value})
        assert r.returncode == 0, (value, r.stderr)
    r = locked.ctl("runs")
    assert r.returncode == 1 and "token" in r.stderr, r.stderr
    r = locked.ctl("cancel", "r_x", env={"SLUICE_TOKEN": TOKENS["reader"]})
    assert r.returncode == 1 and "admin" in r.stderr, r.stderr


def test_public_reads_open_gets_only(locked):
    with open(locked.config) as f:
        text = f.read()
    with open(locked.config, "w") as f:
        f.write(text.replace("public_reads: false", "public_reads: true"))
    try:
        locked.agent.popen.send_signal(signal.SIGHUP)
        wait_for("public reads", lambda: call(locked, "GET", "/api/v1/runs")[0] == 200, 10)
        assert call(locked, "GET", "/api/v1/pipelines")[0] == 200
        assert_error(*call(locked, "POST", "/api/v1/runs/r_x/cancel"), 401)
        assert_error(*call(locked, "GET", "/api/v1/runs", "slc_wrong"), 401)
    finally:
        with open(locked.config, "w") as f:
            f.write(text)
        locked.agent.popen.send_signal(signal.SIGHUP)
        wait_for("reads closed again", lambda: call(locked, "GET", "/api/v1/runs")[0] == 401, 10)


def test_a_reload_to_a_tokens_file_of_no_token_warns_as_the_start_does(locked):
    from harness import hup_and_wait, log_text
    warning = "the tokens file holds no token: every API call is refused"
    path = os.path.join(locked.root, "tokens")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write("# every token revoked\n")
    try:
        before = log_text(locked.agent).count(warning)
        hup_and_wait(locked.agent, "API tokens loaded")
        assert log_text(locked.agent).count(warning) == before + 1
        assert_error(*call(locked, "GET", "/api/v1/runs", TOKENS["boss"]), 401)
    finally:
        with open(path, "w") as f:
            f.write(text)
        hup_and_wait(locked.agent, "API tokens loaded")
    assert call(locked, "GET", "/api/v1/runs", TOKENS["boss"])[0] == 200


# --- errors, validate, paging ---------------------------------------------------

def test_unknown_paths_are_404_and_wrong_methods_405(locked):
    t = TOKENS["boss"]
    assert_error(*call(locked, "GET", "/api/v1/nothing", t), 404)
    assert_error(*call(locked, "GET", "/api/v2/runs", t), 404)
    assert_error(*call(locked, "DELETE", "/api/v1/runs", t), 405)
    assert_error(*call(locked, "GET", "/api/v1/runs/r_x/cancel", t), 405)
    assert_error(*call(locked, "POST", "/api/v1/runs", t), 405)
    assert_error(*call(locked, "POST", "/api/v1/runs/r_x/environments/prod/promote", t), 404)
    # Outside the API: the dashboard's paths, /metrics and /healthz take GET
    # alone; a path that is none of them is no endpoint whatever the method.
    for path in ("/", "/runs/r_x", "/assets/app.js", "/assets/nothing.js", "/favicon.ico",
                 "/metrics", "/healthz"):
        assert_error(*call(locked, "POST", path, t), 405)
    for method in ("POST", "DELETE", "PUT"):
        assert_error(*call(locked, method, "/nothing", t), 404)
        assert_error(*call(locked, method, "/runs/r_x/more", t), 404)


def test_every_method_not_taken_is_a_json_405_with_allow(locked):
    """TRACE and CONNECT, which libevent refuses by default, and methods it
    does not know get the answer any other method gets, not its HTML 501; a
    CONNECT's target is read as a path, and its answer has a length."""
    conn = http.client.HTTPConnection("127.0.0.1", locked.agent_port, timeout=10)
    for method in ("TRACE", "CONNECT", "PROPFIND", "BREW"):
        for path, allow in (("/api/v1/runs", "GET, HEAD"), ("/api/v1/runs/r_x/cancel", "POST"),
                            ("/", "GET, HEAD"), ("/hooks/github", "POST")):
            conn.request(method, path)
            resp = conn.getresponse()
            body = json.loads(resp.read())
            assert (resp.status, resp.getheader("Allow")) == (405, allow), (method, path, body)
            assert body["error"]["code"] == "method_not_allowed", body
        conn.request(method, "/nothing")
        resp = conn.getresponse()
        assert_error(resp.status, json.loads(resp.read()), 404)
    # validate (POST) is also read as the pipeline named "validate" (GET).
    conn.request("OPTIONS", "/api/v1/pipelines/validate")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    assert (resp.status, resp.getheader("Allow")) == (405, "GET, HEAD, POST"), body
    assert body["error"]["message"] == "this endpoint takes GET or POST", body
    conn.close()


def test_a_path_with_an_escaped_nul_is_a_400(locked):
    """%00 decodes to a byte that would end the path early: the run or
    endpoint before it must not answer in its place."""
    run_id = start_run(locked)
    t = TOKENS["boss"]
    assert call(locked, "GET", "/api/v1/runs/" + run_id, t)[0] == 200
    assert_error(*call(locked, "GET", "/api/v1/runs/%s%%00.json" % run_id, t), 400)
    assert_error(*call(locked, "POST", "/api/v1/runs/%s/cancel%%00x" % run_id, t), 400)
    assert_error(*call(locked, "GET", "/runs/%s%%00x" % run_id), 400)
    assert call(locked, "GET", "/api/v1/runs/" + run_id, t)[1]["status"] != "cancelled"


def test_a_path_with_an_escaped_slash_is_a_400(locked):
    """Clients escape each segment: a run id holding "%2F" would otherwise
    decode to more segments, and another endpoint (a stage's retry, an
    environment's) would answer in its place."""
    run_id = start_run(locked)
    t = TOKENS["boss"]
    wait(locked, run_id, "boss")
    for method, path in (("POST", "/api/v1/runs/%s%%2Fstages%%2Fticker/retry" % run_id),
                         ("POST", "/api/v1/runs/%s%%2fenvironments%%2fprod/retry" % run_id),
                         ("GET", "/api/v1/runs/%s%%2Fstages%%2Fticker/log" % run_id)):
        status, body = call(locked, method, path, t, {})
        assert_error(status, body, 400)
        assert "escaped '/'" in body["error"]["message"], body
    assert call(locked, "GET", "/api/v1/runs/" + run_id, t)[1]["stages"]["ticker"][
        "attempt"] == 1


def test_a_path_that_is_not_utf8_is_a_400_and_no_event_quotes_it(locked):
    """The api.call event of a mutating call quotes its path: a byte that
    is not UTF-8 there made it no JSON for any consumer of sluice.events."""
    t = TOKENS["boss"]
    for method, path in (("POST", "/api/v1/runs/r_%ff%c3(/cancel"),
                         ("POST", "/api/v1/pipelines/%ed%a0%80/trigger"),
                         ("GET", "/api/v1/runs/r_%ff"), ("GET", "/runs/r_%c3")):
        assert_error(*call(locked, method, path, t, {}), 400)
    # A path in UTF-8 is quoted as it is, and every event on the topic
    # parses as JSON (envelopes decodes each, as UTF-8).
    status, _ = call(locked, "POST", "/api/v1/runs/r_%C3%A9/cancel", t)
    assert status == 404
    wait_for("the api.call event of the UTF-8 path", lambda: [
        e for e in envelopes(locked.brokers, "sluice.events")
        if e["data"].get("path") == "/api/v1/runs/r_\u00e9/cancel"], 15)


def test_an_asset_is_revalidated_by_its_etag_weak_or_strong(locked):
    """If-None-Match compares weakly: a proxy that compresses the answer
    makes the tag weak (W/"..."), and the browser sends it back so."""
    conn = http.client.HTTPConnection("127.0.0.1", locked.agent_port, timeout=20)
    conn.request("HEAD", "/assets/app.js")
    etag = conn.getresponse().getheader("ETag")
    conn.close()
    assert etag.startswith('"'), etag
    for inm in (etag, "W/" + etag, '"other", W/' + etag, 'W/"other" ,' + etag + " ", "*"):
        status, _, raw = http_request(locked.agent_port, "GET", "/assets/app.js",
                                      headers={"If-None-Match": inm})
        assert (status, raw) == (304, b""), inm
    for inm in ('"other"', etag[:-2] + '"', "W/" + etag[1:], etag + "x"):
        status, _, raw = http_request(locked.agent_port, "GET", "/assets/app.js",
                                      headers={"If-None-Match": inm})
        assert status == 200 and raw, inm


def test_validate_answers_positioned_errors(locked):
    t = TOKENS["reader"]
    # secret_file is found where the agent's pipelines are.
    trigger = b"trigger: {github: {repository: a/b, secret_file: webhook-secret}}\n"
    good = b"name: x\n" + trigger + b"stages:\n  build: {run: [make]}\n"
    status, body = call(locked, "POST", "/api/v1/pipelines/validate?name=x.yaml", t, good)
    assert status == 200 and body["valid"] is True, body
    assert body["pipeline"]["stages"] == ["build"], body
    bad = (b"name: x\n" + trigger +
           b"stages:\n  build: {run: [make]}\n  test: {run: [t], needs: [biuld]}\n")
    status, body = call(locked, "POST", "/api/v1/pipelines/validate?name=x.yaml", t, bad)
    assert status == 422, body
    assert body["valid"] is False and body["error"]["code"] == "invalid", body
    err = body["errors"][0]
    assert (err["file"], err["line"], err["path"]) == ("x.yaml", 5, "stages.test.needs[0]"), err
    assert "biuld" in err["message"], err


def test_validate_opens_no_file_the_pipeline_names(locked):
    """A reader cannot learn through validate which files the agent can
    read: a file that is missing, unreadable or readable gets one answer."""
    answers = []
    for path in ("webhook-secret", "no-such-file", "/etc/shadow", "/proc/self/environ",
                 "/dev/zero"):
        text = ("name: x\ntrigger: {github: {repository: a/b, secret_file: '%s'}}\n"
                "secrets: {TOKEN: '%s'}\n"
                "stages:\n  build: {run: [make], checkout: false}\n"
                "  test: {http: {url: 'https://x.test/', ca_file: '%s'}}\n"
                % (path, path, path)).encode()
        status, body = call(locked, "POST", "/api/v1/pipelines/validate?name=x.yaml",
                            TOKENS["reader"], text)
        answers.append((status, body))
    assert all(a == (200, answers[0][1]) for a in answers), answers
    assert answers[0][1]["valid"] is True, answers


def listed_after_starting(stack, n):
    """Starts n runs; the ids of every run, newest first, as one page lists them."""
    for _ in range(n):
        start_run(stack)
    status, everything = call(stack, "GET", "/api/v1/runs?limit=500", TOKENS["reader"])
    assert status == 200 and everything["next"] is None and everything["prev"] is None, everything
    return [r["id"] for r in everything["runs"]]


def test_runs_page_with_before_and_filter_by_ref(locked):
    ids = listed_after_starting(locked, 3)
    t = TOKENS["reader"]
    assert len(ids) >= 3
    seen, before = [], None
    while True:
        q = "/api/v1/runs?limit=2" + ("&before=" + before if before else "")
        status, page = call(locked, "GET", q, t)
        assert status == 200, page
        assert len(page["runs"]) <= 2
        seen += [r["id"] for r in page["runs"]]
        if not page["next"]:
            break
        before = page["next"]
    assert seen == ids[:len(seen)] and set(ids) <= set(seen), (seen, ids)
    status, page = call(locked, "GET", "/api/v1/runs?ref=main&limit=500", t)
    assert [r["id"] for r in page["runs"]] == ids
    status, page = call(locked, "GET", "/api/v1/runs?ref=other&limit=500", t)
    assert page["runs"] == [] and page["next"] is None
    assert_error(*call(locked, "GET", "/api/v1/runs?before=r_nosuchrun", t), 400)


def test_runs_page_back_to_the_newest_with_after(locked):
    """after= lists the runs just newer than a run, newest first: from any
    page's address alone, its prev leads to the page before it."""
    ids = listed_after_starting(locked, 5)
    t = TOKENS["reader"]
    assert len(ids) >= 5
    status, page = call(locked, "GET", "/api/v1/runs?limit=2&before=" + ids[0], t)
    assert [r["id"] for r in page["runs"]] == ids[1:3] and page["prev"] == ids[1], page
    status, page = call(locked, "GET", "/api/v1/runs?limit=2&after=" + ids[3], t)
    assert status == 200, page
    assert [r["id"] for r in page["runs"]] == ids[1:3], (page, ids)
    assert page["prev"] == ids[1] and page["next"] == ids[2], page
    # Newer from the oldest run gives back every run, each once.
    seen, after = [], ids[-1]
    while after:
        status, page = call(locked, "GET", "/api/v1/runs?limit=2&ref=main&after=" + after, t)
        assert status == 200 and len(page["runs"]) <= 2, page
        seen = [r["id"] for r in page["runs"]] + seen
        after = page["prev"]
    assert seen == ids[:-1], (seen, ids)
    status, page = call(locked, "GET", "/api/v1/runs?after=" + ids[0], t)
    assert page == {"runs": [], "next": None, "prev": None}, page
    status, page = call(locked, "GET", "/api/v1/runs?before=" + ids[-1], t)
    assert page == {"runs": [], "next": None, "prev": None}, page
    assert_error(*call(locked, "GET", "/api/v1/runs?after=r_nosuchrun", t), 400)
    assert_error(*call(locked, "GET", "/api/v1/runs?before=%s&after=%s" % (ids[1], ids[2]), t),
                 400)


def test_a_page_goes_on_after_a_run_removed_meanwhile(locked):
    """A run removed between two pages (agent.run_retention) still says where
    the next page starts, older or newer: its id holds its creation time."""
    ids = listed_after_starting(locked, 3)
    t = TOKENS["reader"]
    status, page = call(locked, "GET", "/api/v1/runs?limit=1", t)
    assert [r["id"] for r in page["runs"]] == ids[:1] and page["next"] == ids[0]
    with Redis(locked.redis_port) as r:
        r.call("ZREM", "sluice:runs", ids[0])
        r.call("DEL", "sluice:run:" + ids[0])
    status, page = call(locked, "GET", "/api/v1/runs?limit=500&before=" + ids[0], t)
    assert status == 200, page
    assert [r["id"] for r in page["runs"]] == ids[1:], (page, ids)
    status, page = call(locked, "GET", "/api/v1/runs?limit=500&after=" + ids[0], t)
    assert status == 200 and page["runs"] == [] and page["prev"] is None, page
    # An id of that form no run ever had pages from its time too; any other
    # text is still refused.
    status, page = call(locked, "GET", "/api/v1/runs?before=r_000000000001aaaaaaaaaaaa", t)
    assert status == 200 and page["runs"] == [], page
    status, page = call(locked, "GET", "/api/v1/runs?limit=500&after=r_000000000001aaaaaaaaaaaa",
                        t)
    assert status == 200 and [r["id"] for r in page["runs"]] == ids[1:], page
    assert_error(*call(locked, "GET", "/api/v1/runs?before=r_00000000000Gaaaaaaaaaaaa", t), 400)


def test_a_page_past_a_removed_run_keeps_to_its_side_within_its_millisecond(locked):
    """Runs created in the millisecond of a removed run stand in the index
    by their ids, as a sorted set orders members of one score: a page past
    the removed run lists only those on its far side, none twice. (The
    runs are written to an index of their own, as intake.lua writes them.)"""
    t = TOKENS["reader"]
    ms = 1_700_000_000_000

    def rid(at, n):
        return "r_%012x%012x" % (at, n)
    older, a, gone, c, newer = rid(ms - 1, 9), rid(ms, 1), rid(ms, 2), rid(ms, 3), rid(ms + 1, 0)
    index = "sluice:pipeline:same-ms:runs"
    with Redis(locked.redis_port) as r:
        for run in (older, a, gone, c, newer):
            r.call("ZADD", index, int(run[2:14], 16), run)
            r.call("HSET", "sluice:run:" + run, "pipeline", "same-ms", "status", "succeeded",
                   "event", "push", "ref", "refs/heads/main")
        r.call("ZREM", index, gone)
        r.call("DEL", "sluice:run:" + gone)
    try:
        status, page = call(locked, "GET", "/api/v1/runs?pipeline=same-ms&after=" + gone, t)
        assert status == 200 and [x["id"] for x in page["runs"]] == [newer, c], page
        status, page = call(locked, "GET", "/api/v1/runs?pipeline=same-ms&before=" + gone, t)
        assert status == 200 and [x["id"] for x in page["runs"]] == [a, older], page
        status, page = call(locked, "GET",
                            "/api/v1/runs?pipeline=same-ms&limit=1&after=" + gone, t)
        assert status == 200 and [x["id"] for x in page["runs"]] == [c], page
    finally:
        with Redis(locked.redis_port) as r:
            r.call("DEL", index, *["sluice:run:" + run for run in (older, a, c, newer)])


# --- Server-Sent Events -----------------------------------------------------------

class Events:
    """A raw SSE reader over one HTTP connection."""

    def __init__(self, stack, path, last_id=None):
        self.conn = http.client.HTTPConnection("127.0.0.1", stack.agent_port, timeout=20)
        headers = {"Accept": "text/event-stream", "Authorization": "Bearer " + TOKENS["reader"]}
        if last_id:
            headers["Last-Event-ID"] = last_id
        self.conn.request("GET", path, headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        assert self.resp.getheader("Content-Type") == "text/event-stream"

    def next(self):
        event = {"event": "message", "data": []}
        while True:
            line = self.resp.fp.readline().decode()
            if not line:
                return None
            line = line.rstrip("\n")
            if not line:
                if event["data"] or event["event"] != "message":
                    event["data"] = "\n".join(event["data"])
                    return event
                continue
            if line.startswith(":"):
                continue
            k, _, v = line.partition(": ")
            if k == "data":
                event["data"].append(v)
            else:
                event[k] = v

    def close(self):
        self.conn.close()


def log_path(run_id):
    return "/api/v1/runs/%s/stages/ticker/log" % run_id


def test_sse_lines_arrive_live_in_order_and_end(locked):
    run_id = start_run(locked)
    ev = Events(locked, log_path(run_id))
    first = ev.next()
    assert json.loads(first["data"])["line"] == "tick 1", first
    # Live: the stage is still writing when its first line arrives.
    status, run = call(locked, "GET", "/api/v1/runs/" + run_id, TOKENS["reader"])
    assert run["stages"]["ticker"]["status"] == "running", run
    lines, ids = [json.loads(first["data"])["line"]], [first["id"]]
    while True:
        e = ev.next()
        assert e is not None, "the stream closed before its end event"
        if e["event"] == "end":
            assert json.loads(e["data"])["status"] == "succeeded", e
            break
        lines.append(json.loads(e["data"])["line"])
        ids.append(e["id"])
    ev.close()
    stored = locked_log(locked, run_id)
    assert lines[:TICKS] == ["tick %d" % i for i in range(1, TICKS + 1)], lines
    assert lines == [l["line"] for l in stored] and ids == [l["id"] for l in stored]


def locked_log(stack, run_id):
    status, body = call(stack, "GET", log_path(run_id) + "?limit=1000", TOKENS["reader"])
    assert status == 200, body
    return body["lines"]


def test_sse_resumes_from_last_event_id_without_loss_or_duplicates(locked):
    run_id = start_run(locked)
    ev = Events(locked, log_path(run_id))
    got = [ev.next() for _ in range(5)]
    ev.close()
    ev = Events(locked, log_path(run_id), last_id=got[-1]["id"])
    while True:
        e = ev.next()
        if e["event"] == "end":
            break
        got.append(e)
    ev.close()
    assert [json.loads(e["data"])["line"] for e in got] == [
        l["line"] for l in locked_log(locked, run_id)]
    assert len(got) > TICKS


def test_head_of_a_live_log_stream_ends_with_its_headers(locked):
    """HEAD answers what GET would without the body: a stream's HEAD ends
    at once, and the connection takes the next request while the stage
    still runs."""
    run_id = start_run(locked)
    ev = Events(locked, log_path(run_id))
    assert json.loads(ev.next()["data"])["line"] == "tick 1"
    ev.close()
    conn = http.client.HTTPConnection("127.0.0.1", locked.agent_port, timeout=20)
    headers = {"Authorization": "Bearer " + TOKENS["reader"]}
    conn.request("HEAD", log_path(run_id), headers=dict(headers, Accept="text/event-stream"))
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Content-Type") == "text/event-stream"
    assert resp.read() == b""
    conn.request("GET", "/api/v1/runs/" + run_id, headers=headers)
    run = json.loads(conn.getresponse().read())
    conn.close()
    assert run["stages"]["ticker"]["status"] == "running", run


def test_sse_of_an_unknown_stage_is_a_json_404(locked):
    status, body = call(locked, "GET", "/api/v1/runs/r_x/stages/ticker/log", TOKENS["reader"],
                        headers={"Accept": "text/event-stream"})
    assert_error(status, body, 404)


def test_a_log_cursor_that_is_no_line_id_is_a_400(locked):
    """after= and Last-Event-ID are ids as Redis gives them, MS or MS-SEQ,
    each a number below 2^64 - 1: anything else Redis would refuse, and is
    refused before it gets there, for the plain log and its stream alike."""
    run_id = start_run(locked)
    t = TOKENS["reader"]
    for cursor in ("1-2-3", "-", "--", "1-", "-1", "99999999999999999999999-0",
                   "18446744073709551615-0", "0-18446744073709551615", "1x", "+1"):
        query = urllib.parse.quote(cursor, safe="")
        assert_error(*call(locked, "GET", log_path(run_id) + "?after=" + query, t), 400)
        assert_error(*call(locked, "GET", log_path(run_id), t,
                           headers={"Accept": "text/event-stream",
                                    "Last-Event-ID": cursor}), 400)
    for cursor in ("0", "1-0", "18446744073709551614-18446744073709551614"):
        status, body = call(locked, "GET", log_path(run_id) + "?after=" + cursor, t)
        assert status == 200, (cursor, status, body)


def test_sluicectl_logs_follow_prints_live_lines_and_stops_at_the_end(locked):
    run_id = start_run(locked)
    r = locked.ctl("logs", run_id, "ticker", "-f", env={"SLUICE_TOKEN": TOKENS["reader"]},
                   timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [l["line"] for l in locked_log(locked, run_id)], r.stdout
    assert r.stdout.splitlines()[:TICKS] == ["tick %d" % i for i in range(1, TICKS + 1)]


# --- TLS, and tokens never logged ----------------------------------------------------

def self_signed(tmp_path, *key_options):
    """A certificate for 127.0.0.1 and its key, written with key_options
    (["-nodes"]: unencrypted); their paths."""
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", *key_options, "-keyout",
                    key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def tls_config(locked, tmp_path, cert, key, port):
    """The locked stack's configuration, listening with TLS on port; its path."""
    with open(locked.config) as f:
        text = f.read()
    config = str(tmp_path / "tls.yaml")
    with open(config, "w") as f:
        f.write(text.replace("listen: \"127.0.0.1:%d\"" % locked.agent_port,
                             "listen: \"127.0.0.1:%d\"\n  tls_cert: %s\n  tls_key: %s" % (
                                 port, json.dumps(cert), json.dumps(key)))
                .replace("pipelines_dir: \"pipelines.d\"",
                         "pipelines_dir: %s" % json.dumps(os.path.join(locked.root,
                                                                        "pipelines.d")))
                .replace("tokens_file: \"tokens\"",
                         "tokens_file: %s" % json.dumps(os.path.join(locked.root, "tokens"))))
    return config


def test_tls_listener_with_a_self_signed_certificate(locked, tmp_path):
    cert, key = self_signed(tmp_path, "-nodes")
    port = free_port()
    config = tls_config(locked, tmp_path, cert, key, port)
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(text.replace("  tls_cert:", "  http_timeout: 2s\n  tls_cert:"))
    agent = locked._spawn("agent-tls", [binary("sluice-agent"), "--config", config,
                                        "--log-level", "debug"])
    ctx = ssl.create_default_context(cafile=cert)

    def get(path, token=None):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        try:
            conn.request("GET", path, headers={"Authorization": "Bearer " + token} if token
                         else {})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def up():
        try:
            return get("/healthz")[0] == 200
        except OSError:
            return False
    wait_for("the TLS agent", up, 15, [agent])
    assert get("/api/v1/runs", TOKENS["reader"])[0] == 200
    assert get("/api/v1/runs")[0] == 401
    # sluicectl verifies the agent against the given CA file (--ca-file or
    # $SLUICE_CA_FILE); against the system's CAs the self-signed agent is
    # refused with the reason.
    url = "https://127.0.0.1:%d" % port
    reader = {"SLUICE_TOKEN": TOKENS["reader"]}
    r = locked.ctl("--url", url, "--ca-file", cert, "runs", env=reader)
    assert r.returncode == 0, r.stderr
    r = locked.ctl("--url", url, "pipelines", env=dict(reader, SLUICE_CA_FILE=cert))
    assert r.returncode == 0, r.stderr
    r = locked.ctl("--url", url, "runs", env=reader)
    assert r.returncode == 1 and "certificate" in r.stderr.lower(), (r.returncode, r.stderr)
    # A NUL byte inside a header is seen through TLS too: 400, not a token
    # read up to the NUL.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"GET /api/v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
                  + TOKENS["reader"].encode() + b"\x00x\r\nConnection: close\r\n\r\n")
        answer = recv_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"header Authorization holds a control character" in answer, answer
    # Plain HTTP on the TLS port is answered 400, saying to use https://,
    # the request and its body read first so that no reset loses the answer.
    status, body, raw = http_request(port, "POST", "/hooks/github", b"{}" * 20000,
                                     headers={"Content-Type": "application/json"}, timeout=5)
    assert status == 400 and raw == b"This port speaks TLS: use https:// to reach it.\n", raw
    with open(agent.log) as f:
        assert 'msg="plain HTTP request on the TLS port: answered 400" peer=127.0.0.1' in \
            f.read()
    r = subprocess.run(["curl", "-sS", "-i", "http://127.0.0.1:%d/healthz" % port],
                       capture_output=True, timeout=10)
    assert r.stdout.startswith(b"HTTP/1.1 400 Bad Request\r\n"), r
    assert r.stdout.endswith(b"\r\n\r\nThis port speaks TLS: use https:// to reach it.\n"), r
    # sluicectl sent there by an http:// URL says so too.
    r = locked.ctl("--url", "http://127.0.0.1:%d" % port, "runs", env=reader)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert r.stderr == ("sluicectl: http://127.0.0.1:%d answered HTTP 400: This port speaks "
                        "TLS: use https:// to reach it.\n" % port), r.stderr
    # A client silent since it connected is dropped after agent.http_timeout
    # all the same.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as silent:
        started = time.monotonic()
        assert recv_until_closed(silent) == b""
        assert 1 <= time.monotonic() - started < 8

    # Every connection above, the failed handshakes included, was counted
    # out once closed (agent.max_connections, connection.c).
    def open_connections():
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=5)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        return [float(line.split()[1]) for line in text.splitlines()
                if line.startswith("sluice_http_connections ")]
    wait_for("the TLS connections counted out", lambda: open_connections() == [1.0], 10, [agent])
    agent.stop()
    locked.procs.remove(agent)


def test_an_encrypted_tls_key_is_refused_with_the_reason_and_no_prompt(locked, tmp_path):
    # Started from a terminal (its controlling one), the agent must not ask
    # there for the key's pass phrase and wait: it exits 1 and says why.
    cert, key = self_signed(tmp_path, "-passout", "pass:secret")
    config = tls_config(locked, tmp_path, cert, key, free_port())
    pid, terminal = pty.fork()
    if pid == 0:
        os.execv(binary("sluice-agent"), ["sluice-agent", "--config", config])
    said, deadline = b"", time.monotonic() + 10
    while time.monotonic() < deadline:
        if select.select([terminal], [], [], 0.2)[0]:
            try:
                chunk = os.read(terminal, 4096)
            except OSError:  # the agent exited: the terminal is closed
                break
            if not chunk:
                break
            said += chunk
    gone, status = os.waitpid(pid, os.WNOHANG)
    while not gone and time.monotonic() < deadline:
        time.sleep(0.05)
        gone, status = os.waitpid(pid, os.WNOHANG)
    if not gone:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(terminal)
    assert gone and os.waitstatus_to_exitcode(status) == 1, said
    assert b"pass phrase" in said and b"Enter PEM" not in said, said
    assert b"the TLS key is encrypted" in said, said


def test_tokens_never_appear_in_any_log(locked):
    # Last in this module: every test above has sent tokens.
    logs = glob.glob(os.path.join(locked.logdir, "*"))
    assert logs
    for path in logs:
        with open(path, errors="replace") as f:
            text = f.read()
        for name, token in TOKENS.items():
            assert token not in text, (name, path)
            assert token[4:20] not in text, (name, path)
