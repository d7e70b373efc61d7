"""Executors end to end: sh: scripts, http: requests, the environment a
stage sees, secrets kept out of the log stream, the log cap, output that is
not UTF-8, output faster than Redis takes it, and timeouts.
One stack of its own, with a local HTTP server for the http: stages."""

import base64
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import LocalRepo, Stack, http_request, pipeline, rss_is_its_own, wait_for
from kafkawire import envelopes

TOKEN = "tok-Zx9qW3rT7yL2vB"
LEAK = "SLUICE_IT_WORKER_ONLY"
KEEP = "SLUICE_IT_INHERITED"

LONG_NAME = "/nonexistent/" + "\u00e9" * 80
AGAIN = ('if [ "$SLUICE_ATTEMPT" = 1 ]; then %s; '
         'else echo again=yes >> "$SLUICE_OUTPUT"; fi; echo done')
BYTE_BY_BYTE = ('for c in $(echo "$TOKEN" | fold -w1); do printf %s "$c"; sleep 0.01; done; '
                'echo; printf %s "$TOKEN" | base64; echo "$TOKEN" | base64; '
                'echo "plain $TOKEN and again $TOKEN"')


class Hooks(http.server.BaseHTTPRequestHandler):
    """/deploy answers 201 and remembers the body; /flaky 503 once, then 200;
    /gone 404."""
    bodies = []
    hits = {}

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        n = Hooks.hits[self.path] = Hooks.hits.get(self.path, 0) + 1
        if self.path.startswith("/deploy/"):
            Hooks.bodies.append((self.path, self.headers.get("Authorization"), body))
            code, reply = 201, b"deployed\n"
        elif self.path == "/flaky":
            code, reply = (503, b"busy\n") if n == 1 else (200, b"ok\n")
        else:
            code, reply = 404, b"no such hook\n"
        self.send_response(code)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)


def http_stage(port, path, **extra):
    spec = {"method": "POST", "url": "http://127.0.0.1:%d%s" % (port, path),
            "retries": 2, "backoff": "50ms", "timeout": "5s"}
    spec.update(extra)
    return {"kind": "test", "http": spec}


def pipelines(repo, port):
    def p(name, stages, **kw):
        return pipeline(name, "sluice-it/" + name, checkout=repo.url, stages=stages, **kw)

    secret = p("secret", {"build": {"sh": BYTE_BY_BYTE}})
    secret["secrets"] = {"TOKEN": "token"}
    hook = p("hook", {"test": http_stage(
        port, "/deploy/${SLUICE_REF}",
        headers={"Authorization": "Bearer ${TOKEN}"},
        body='{"ref": "${SLUICE_REF}", "quote": "${QUOTE}"}')}, vars_={"QUOTE": 'say "hi"'})
    hook["secrets"] = {"TOKEN": "token"}
    # A line that is no KEY=VALUE with the secret where a cut at 200 bytes
    # would go through it, and an output holding the secret.
    output_secret = p("output-secret", {"build": {
        "sh": 'echo "not a pair $(printf %0180d 0)$TOKEN and more" >> "$SLUICE_OUTPUT"\n'
              'echo "url=https://ci:$TOKEN@db.example" >> "$SLUICE_OUTPUT"\n'
              'echo "user=ci" >> "$SLUICE_OUTPUT"',
        "checkout": False}})
    output_secret["secrets"] = {"TOKEN": "token"}
    # A deployment whose pre check prints the secret and fails.
    rollout_secret = p("rollout-secret", {"build": {"sh": "true", "checkout": False}})
    rollout_secret["secrets"] = {"TOKEN": "token"}
    rollout_secret["environments"] = {"production": {
        "image": "registry.local/app:1",
        "provider": {"type": "exec", "actions": {"apply": {"sh": "true"}}},
        "strategy": {"type": "RollingUpdate"},
        "checks": {"pre": [{"name": "quota", "sh": 'echo "token $TOKEN"; exit 1'}]}}}
    # A deployment whose pre check prints more than the 4 MiB cap: 84
    # lines of 60,000 bytes.
    rollout_flood = p("rollout-flood", {"build": {"sh": "true", "checkout": False}})
    rollout_flood["environments"] = {"production": dict(
        rollout_secret["environments"]["production"],
        checks={"pre": [{"name": "flood",
                         "sh": "head -c 5040000 /dev/zero | tr '\\0' x | fold -w 60000"}]})}
    return {
        "shell.yaml": p("shell", {"build": {
            "sh": 'echo "$GREETING from $SLUICE_STAGE" | tr a-z A-Z\n'
                  'echo "literal ${NOT_EXPANDED_BY_SLUICE:-left to the shell}"'}},
            vars_={"GREETING": "hello"}),
        "env.yaml": p("env", {
            "build": {"sh": 'echo "leak=${%s:-none} keep=${%s:-none}"' % (LEAK, KEEP)},
            "test": {"sh": 'echo "leak=${%s:-none} keep=${%s:-none}"' % (LEAK, KEEP),
                     "inherit_env": [KEEP]}}),
        "secret.yaml": secret,
        "capped.yaml": p("capped", {"build": {"sh": "seq 1 1000", "log_cap": 100}}),
        "empty-flood.yaml": p("empty-flood", {"build": {
            "sh": "yes '' | head -n 2000000; echo done", "log_cap": 4096}}),
        "line-flood.yaml": p("line-flood", {"build": {
            "sh": "yes x | head -n 300000; echo done", "log_cap": 16 * 1024 * 1024}}),
        "slow.yaml": p("slow", {"build": {"sh": "echo started; sleep 30", "timeout": "1s"}}),
        # Ends by a real-time signal (glibc's SIGRTMIN is 34), which has no
        # name of its own.
        "realtime.yaml": p("realtime", {"build": {"sh": "kill -35 $$"}}),
        "hook.yaml": hook,
        "flaky.yaml": p("flaky", {"test": http_stage(port, "/flaky")}),
        "scanhook.yaml": p("scanhook", {"scan": dict(http_stage(port, "/deploy/scan"),
                                                     kind="scan")}),
        "gone.yaml": p("gone", {"test": http_stage(port, "/gone")}),
        "outputs.yaml": p("outputs", {
            "build": {"sh": 'echo "image=reg.example/app@sha256:abc" >> "$SLUICE_OUTPUT"\n'
                            'echo "not a pair" >> "$SLUICE_OUTPUT"\n'
                            'echo "built" > "$SLUICE_ARTIFACTS/note"'},
            "test": {"run": ["echo", "testing ${build.image}"], "needs": ["build"]},
            "check": {"kind": "test", "needs": ["build"],
                      "sh": 'cat "$SLUICE_ARTIFACTS/note"; env | grep -c "build.image" || true'}}),
        # Bytes no JSON string can hold (invalid UTF-8, NUL), and an escape
        # sequence that would write the reader's clipboard.
        "bytes.yaml": p("bytes", {"build": {
            "sh": r"printf 'latin1 caf\351\n'; printf 'nul \000 byte\n'; "
                  r"printf 'cut \342\202\n'; printf 'euro \342\202\254\n'; "
                  r"printf 'osc \033]52;c;eA==\007\033[31mred\033[0m\n'; "
                  r"""printf 'ok=yes\nbad=\377\n' >> "$SLUICE_OUTPUT"; echo done"""}}),
        # A command whose name, past the bytes an error quotes of it, ends
        # inside a two-byte character.
        "long-name.yaml": p("long-name", {"build": {
            "run": [LONG_NAME], "checkout": False}}),
        # $SLUICE_OUTPUT replaced by what never ends, or never answers, in
        # the first attempt; the second writes an output.
        "output-link.yaml": p("output-link", {"build": {
            "sh": AGAIN % 'ln -sf /dev/zero "$SLUICE_OUTPUT"', "checkout": False,
            "retry": {"max": 1, "backoff": "50ms"}}}),
        "output-fifo.yaml": p("output-fifo", {"build": {
            "sh": AGAIN % 'rm "$SLUICE_OUTPUT"; mkfifo "$SLUICE_OUTPUT"', "checkout": False,
            "retry": {"max": 1, "backoff": "50ms"}}}),
        "output-nul.yaml": p("output-nul", {"build": {
            "sh": r"""printf 'a=1\nb=\000x\n' >> "$SLUICE_OUTPUT"; """
                  r"""head -c 100000 /dev/zero >> "$SLUICE_OUTPUT"; echo done""",
            "checkout": False}}),
        "output-secret.yaml": output_secret,
        "rollout-secret.yaml": rollout_secret,
        "rollout-flood.yaml": rollout_flood,
        "bare.yaml": p("bare", {
            "build": {"sh": 'pwd; ls -A | wc -l; echo kept > note', "checkout": False},
            "test": {"sh": "ls", "needs": ["build"]}}),
    }


@pytest.fixture(scope="module")
def env_stack():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root = tempfile.mkdtemp(prefix="sluice-exec-")
    repo = LocalRepo(os.path.join(root, "repo"))
    # Artifacts go to a directory of their own, as shared storage would.
    s = Stack(root, repo, pipelines(repo, server.server_address[1]),
              extra_secrets={"token": TOKEN + "\n"},
              extra_settings={"worker": {"artifacts_dir": os.path.join(root, "artifacts")}})
    # Only the workers' environment has these; a stage sees KEEP only when
    # it asks for it and LEAK never.
    os.environ[LEAK] = "worker-only"
    os.environ[KEEP] = "asked-for"
    try:
        s.start()
    except BaseException as e:
        s.stop()
        raise RuntimeError("the stack did not start: %s\n%s" % (e, s.report())) from None
    finally:
        del os.environ[LEAK]
        del os.environ[KEEP]
    yield s
    s.stop()
    server.shutdown()
    if not os.environ.get("SLUICE_KEEP_TMP"):
        shutil.rmtree(root, ignore_errors=True)


def start(stack, name):
    status, body = stack.post_hook("push", stack.push_payload("sluice-it/" + name))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    return stack.wait_run(body["runs"][0], timeout=60)


def lines(stack, run, stage):
    return [(l["stream"], l["line"]) for l in stack.log(run["id"], stage)]


def test_sh_stage_runs_a_pipe_with_variables_from_the_environment(env_stack):
    run = start(env_stack, "shell")
    assert run["status"] == "succeeded", run
    out = [l for s, l in lines(env_stack, run, "build") if s == "stdout"]
    assert "HELLO FROM BUILD" in out, out
    assert "literal left to the shell" in out, out


def test_worker_environment_does_not_leak_unless_asked(env_stack):
    run = start(env_stack, "env")
    assert run["status"] == "succeeded", run
    build = [l for s, l in lines(env_stack, run, "build") if s == "stdout"]
    test = [l for s, l in lines(env_stack, run, "test") if s == "stdout"]
    assert build == ["leak=none keep=none"], build
    assert test == ["leak=none keep=asked-for"], test


def test_secret_and_its_base64_never_reach_the_log_stream(env_stack):
    run = start(env_stack, "secret")
    assert run["status"] == "succeeded", run
    out = [l for s, l in lines(env_stack, run, "build") if s == "stdout"]
    assert out[0] == "[masked]", out
    assert out[1] == "[masked]", out
    assert out[-1] == "plain [masked] and again [masked]", out
    forms = [TOKEN, base64.b64encode(TOKEN.encode()).decode(),
             base64.b64encode((TOKEN + "\n").encode()).decode()[:20]]
    raw = subprocess.run(
        ["redis-cli", "-p", str(env_stack.redis_port), "XRANGE",
         "sluice:log:%s:build" % run["id"], "-", "+"],
        capture_output=True, text=True, check=True).stdout
    assert "[masked]" in raw, raw
    for form in forms:
        assert form not in raw, (form, raw)
        assert form not in "\n".join(out), (form, out)
    with open(os.path.join(env_stack.logdir, "worker-1.log")) as f:
        assert TOKEN not in f.read()


def test_log_cap_drops_and_counts_lines(env_stack):
    run = start(env_stack, "capped")
    assert run["status"] == "succeeded", run
    got = lines(env_stack, run, "build")
    out = [l for s, l in got if s == "stdout"]
    # A line counts its bytes without the newline and 32 more: 1..3 take 99.
    assert out == ["1", "2", "3"], out
    assert ("system", "[997 lines (2890 bytes) dropped: log cap of 100 bytes reached]") \
        in got, got


def rss_kb(proc):
    with open("/proc/%d/status" % proc.popen.pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))


def run_watching_rss(stack, name):
    """Runs the pipeline name; returns the run and the largest RSS of the
    worker that ran it, sampled while it ran, above its RSS before."""
    worker = next(p for p in stack.procs if p.name == "worker-1")
    before = peak = rss_kb(worker)
    status, body = stack.post_hook("push", stack.push_payload("sluice-it/" + name))
    assert status == 202 and len(body.get("runs", [])) == 1, (status, body)
    run_id = body["runs"][0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and stack.run(run_id)["status"] not in (
            "succeeded", "failed", "cancelled", "timed_out"):
        peak = max(peak, rss_kb(worker))
        time.sleep(0.1)
    return stack.wait_run(run_id, timeout=10), peak - before


def test_empty_lines_reach_the_log_cap(env_stack):
    run, grown_kb = run_watching_rss(env_stack, "empty-flood")
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert [(a["attempt"], a["status"]) for a in build["attempts"]] == [(1, "succeeded")], build
    got = lines(env_stack, run, "build")
    # 4 KiB is 128 empty lines at 32 bytes each.
    assert [l for s, l in got if s == "stdout"] == [""] * 128, len(got)
    assert ("system", "[1999873 lines (4 bytes) dropped: log cap of 4 KiB reached]") \
        in got, got[-3:]
    if rss_is_its_own("sluice-worker"):
        assert grown_kb < 32 * 1024, grown_kb


def test_output_faster_than_redis_stores_it_waits_in_its_pipe(env_stack):
    """300,000 lines, every one stored: the worker reads them no faster than
    Redis takes them, so its memory stays bounded and its lease renewals go
    through."""
    run, grown_kb = run_watching_rss(env_stack, "line-flood")
    build = run["stages"]["build"]
    assert run["status"] == "succeeded", run
    assert [(a["attempt"], a["status"]) for a in build["attempts"]] == [(1, "succeeded")], build
    got = lines(env_stack, run, "build")
    out = [l for s, l in got if s == "stdout"]
    assert len(out) == 300001 and out[-2:] == ["x", "done"], (len(out), got[-3:])
    assert not any("dropped" in l for s, l in got if s == "system"), got[-3:]
    if rss_is_its_own("sluice-worker"):
        assert grown_kb < 32 * 1024, grown_kb


def test_output_that_is_not_utf8_is_shown_with_replacement_characters(env_stack):
    run = start(env_stack, "bytes")
    assert run["status"] == "succeeded", run
    got = lines(env_stack, run, "build")
    # Every line is there, each bad byte (and NUL) as U+FFFD; UTF-8 kept.
    assert [l for s, l in got if s == "stdout"] == [
        "latin1 caf\ufffd", "nul \ufffd byte", "cut \ufffd\ufffd", "euro \u20ac",
        "osc \x1b]52;c;eA==\x07\x1b[31mred\x1b[0m", "done"], got
    # The event stream shows the same lines.
    status, _, raw = http_request(
        env_stack.agent_port, "GET", "/api/v1/runs/%s/stages/build/log" % run["id"],
        headers={"Accept": "text/event-stream"})
    assert status == 200, raw
    assert "caf\ufffd".encode() in raw and "euro \u20ac".encode() in raw, raw
    # sluicectl keeps the colour and leaves out the clipboard write.
    shown = env_stack.ctl("logs", run["id"], "build")
    assert shown.returncode == 0, shown.stderr
    assert "osc \x1b[31mred\x1b[0m\n" in shown.stdout, shown.stdout
    assert "52;" not in shown.stdout, shown.stdout
    # An output value that is not UTF-8 is left out, and the log says so.
    assert ("system", "$SLUICE_OUTPUT: the value of bad is not UTF-8, left out") in got, got
    stage = env_stack.run(run["id"])["stages"]["build"]
    assert stage.get("outputs") in ({"ok": "yes"}, '{"ok":"yes"}'), stage


def deploy_worker(stack):
    """A worker of its own for the pipelines with an environment, started
    by the first test that needs it."""
    if not any(p.name == "worker-deploy" for p in stack.procs):
        stack.start_worker("deploy", 1, "worker-deploy")


def test_a_deployment_records_its_messages_with_secrets_masked(env_stack):
    """A check's message quotes its command's last line: the rollout the
    API shows has the secret masked, as the log has."""
    deploy_worker(env_stack)
    run = start(env_stack, "rollout-secret")
    stage = run["stages"]["deploy@production"]
    assert stage["status"] == "failed", run
    assert stage["error"] == "quota failed: exit code 1: token [masked]", stage
    rollout = stage["rollout"]
    assert TOKEN[:4] not in json.dumps(rollout), rollout
    assert rollout["checks"]["pre"][0]["message"] == "exit code 1: token [masked]", rollout
    assert rollout["image"] == "registry.local/app:1", rollout


def test_a_deployment_checks_output_stops_at_the_log_cap(env_stack):
    """What a check prints is the stage's output, under worker.log_cap as a
    command stage's is; the deployment's own lines are still stored."""
    deploy_worker(env_stack)
    run = start(env_stack, "rollout-flood")
    assert run["status"] == "succeeded", run
    got = lines(env_stack, run, "deploy@production")
    # 69 lines of 60,000 bytes and 32 more each fit in 4 MiB.
    assert [len(l) for s, l in got if s == "stdout"] == [60000] * 69, len(got)
    assert ("system", "[15 lines (900000 bytes) dropped: log cap of 4 MiB reached]") \
        in got, got[-3:]
    assert ("system", "deployment succeeded") in got, got[-3:]


def test_an_error_quoting_a_long_command_is_utf8_in_the_run_and_its_event(env_stack):
    run = start(env_stack, "long-name")
    build = run["stages"]["build"]
    assert build["status"] == "failed" and build["exit_code"] == 127, run
    # The name is cut where the error's buffer ends, between characters or
    # with U+FFFD; the stage keeps its error (the API left it out) and its
    # stage.finished event is JSON (it held the first byte of an é alone).
    assert build["error"].startswith("exec /nonexistent/\u00e9\u00e9"), build
    assert build["error"].endswith(": No such file or directory"), build
    finished = wait_for("the stage.finished event", lambda: [
        e for e in envelopes(env_stack.brokers, "sluice.events")
        if e["type"] == "dev.sluice.stage.finished" and e["data"]["run"] == run["id"]], 10)
    assert [e["data"]["error"] for e in finished] == [build["error"]], finished


def test_timeout_ends_as_timed_out_with_the_signal(env_stack):
    run = start(env_stack, "slow")
    build = run["stages"]["build"]
    assert build["status"] == "timed_out", run
    assert build["exit_code"] is None, build
    assert build["signal"] == "SIGTERM", build
    assert build["error"].startswith("timed out after"), build


def test_a_stage_ended_by_a_real_time_signal_names_it(env_stack):
    run = start(env_stack, "realtime")
    build = run["stages"]["build"]
    assert build["status"] == "failed" and build["exit_code"] is None, run
    assert build["signal"] == "SIGRTMIN+1", build
    assert build["error"] == "killed by SIGRTMIN+1", build


def test_http_stage_posts_a_templated_request(env_stack):
    run = start(env_stack, "hook")
    assert run["status"] == "succeeded", run
    path, auth, body = Hooks.bodies[-1]
    assert path == "/deploy/refs%2Fheads%2Fmain", path
    assert auth == "Bearer " + TOKEN
    assert body == b'{"ref": "refs/heads/main", "quote": "say \\"hi\\""}', body
    got = lines(env_stack, run, "test")
    assert ("stdout", "deployed") in got, got
    assert any(s == "system" and l.startswith("HTTP 201 from http://127.0.0.1:")
               for s, l in got), got


def maps_libcurl(proc):
    with open("/proc/%d/maps" % proc.popen.pid) as f:
        return "/libcurl.so" in f.read()


def test_a_worker_loads_libcurl_with_its_first_http_stage(env_stack):
    """Workers are linked without libcurl (workers/curlload.h): a worker that
    has run no http: stage has not loaded it; its first http: stage loads it
    and runs. A worker of its own, for the one pipeline with scan stages."""
    worker = env_stack.start_worker("scan", 1, "worker-scan")
    assert not maps_libcurl(worker)
    run = start(env_stack, "scanhook")
    assert run["status"] == "succeeded", run
    assert maps_libcurl(worker)
    got = lines(env_stack, run, "scan")
    assert ("stdout", "deployed") in got, got


def test_http_stage_retries_a_503(env_stack):
    run = start(env_stack, "flaky")
    assert run["status"] == "succeeded", run
    assert Hooks.hits["/flaky"] == 2


def test_http_stage_fails_on_404_without_retrying(env_stack):
    run = start(env_stack, "gone")
    test = run["stages"]["test"]
    assert test["status"] == "failed", run
    assert test["exit_code"] is None, test
    assert test["error"].startswith("HTTP 404 from http://127.0.0.1:"), test
    assert test["error"].endswith("/gone"), test
    assert Hooks.hits["/gone"] == 1


def test_stage_without_checkout_runs_in_an_empty_directory_of_its_own(env_stack):
    run = start(env_stack, "bare")
    assert run["status"] == "succeeded", run
    build = lines(env_stack, run, "build")
    out = [l for s, l in build if s == "stdout"]
    assert out[0].endswith("/workspaces/%s/build" % run["id"]), out
    assert out[1] == "0", out
    assert not any(l.startswith("checking out") for _, l in build), build
    # The next stage of the same run still gets its checkout.
    test = [l for s, l in lines(env_stack, run, "test") if s == "stdout"]
    assert "test.sh" in test, test


def test_outputs_reach_later_stages_as_stage_dot_key(env_stack):
    run = start(env_stack, "outputs")
    assert run["status"] == "succeeded", run
    build = lines(env_stack, run, "build")
    # A line that is not KEY=VALUE is reported and left out.
    assert any(s == "system" and "not KEY=VALUE" in l and "not a pair" in l
               for s, l in build), build
    assert ("stdout", "testing reg.example/app@sha256:abc") in lines(env_stack, run, "test")
    # Artifacts are shared by the run's stages, in worker.artifacts_dir;
    # outputs are not exported into the environment (a shell could not
    # read a dotted name).
    assert [l for s, l in lines(env_stack, run, "check") if s == "stdout"] == ["built", "0"]
    with open(os.path.join(env_stack.root, "artifacts", run["id"], "note")) as f:
        assert f.read() == "built\n"
    stage = env_stack.run(run["id"])["stages"]["build"]
    assert stage.get("outputs") in ({"image": "reg.example/app@sha256:abc"},
                                    '{"image":"reg.example/app@sha256:abc"}'), stage


@pytest.mark.parametrize("name, what", [("output-link", "a symbolic link"),
                                        ("output-fifo", "a FIFO")])
def test_an_output_file_that_is_no_regular_file_fails_the_stage(env_stack, name, what):
    run = start(env_stack, name)
    build = run["stages"]["build"]
    assert build["attempts"][0]["status"] == "failed", run
    error = "$SLUICE_OUTPUT is %s, not a regular file" % what
    assert ("system", error) in lines(env_stack, run, "build")
    # The next attempt has a file of its own: the worker neither opened the
    # FIFO, which would have held it up, nor wrote through the link.
    assert build["status"] == "succeeded" and build["attempt"] == 2, build
    assert build.get("outputs") in ({"again": "yes"}, '{"again":"yes"}'), build
    # The worker was not held up reading it.
    assert start(env_stack, "shell")["status"] == "succeeded"


def test_an_artifacts_directory_that_cannot_be_made_is_named_in_the_error(env_stack):
    artifacts = os.path.join(env_stack.root, "artifacts")
    made = os.path.isdir(artifacts)
    if made:
        os.rename(artifacts, artifacts + ".away")
    try:
        with open(artifacts, "w") as f:
            f.write("a file where worker.artifacts_dir should be\n")
        run = start(env_stack, "shell")
    finally:
        os.remove(artifacts)
        if made:
            os.rename(artifacts + ".away", artifacts)
    build = run["stages"]["build"]
    assert build["status"] == "failed", run
    assert build["error"] == "cannot create %s/%s: Not a directory" % (artifacts, run["id"]), \
        build


def test_secrets_reach_no_output_nor_the_report_of_a_line_left_out(env_stack):
    run = start(env_stack, "output-secret")
    assert run["status"] == "succeeded", run
    got = lines(env_stack, run, "build")
    want = ("$SLUICE_OUTPUT: not KEY=VALUE or KEY<<DELIMITER, left out: not a pair "
            "%s[masked] and more") % (
        "0" * 180)
    assert ("system", want) in got, got
    assert not any(TOKEN[:4] in l for s, l in got), got
    # The API shows outputs: one holding the secret is left out.
    assert ("system", "$SLUICE_OUTPUT: the value of url holds a secret, left out") in got, got
    stage = env_stack.run(run["id"])["stages"]["build"]
    assert stage.get("outputs") in ({"user": "ci"}, '{"user":"ci"}'), stage


def test_nul_bytes_in_the_output_file_count_toward_its_limit(env_stack):
    run = start(env_stack, "output-nul")
    assert run["status"] == "succeeded", run
    got = lines(env_stack, run, "build")
    assert ("system", "$SLUICE_OUTPUT is larger than 64 KiB: the rest is left out") in got, got
    assert ("system", "$SLUICE_OUTPUT: a line holds a NUL byte, left out") in got, got
    stage = env_stack.run(run["id"])["stages"]["build"]
    assert stage.get("outputs") in ({"a": "1"}, '{"a":"1"}'), stage
