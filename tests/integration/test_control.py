"""Stage graphs and run control on one stack of their own: parallel stages
and what a failure skips, `when:` skips, cancel and timeout leaving no
process behind, retry of a stage and of a run on the same sha, manual
triggers, the pipelines listing, and `sluicectl validate` offline."""

import hashlib
import json
import os
import subprocess

import pytest

from conftest import binary, git, pipeline, started_stack, wait_for

GRAPH_REPO = "sluice-it/graph"
WHEN_REPO = "sluice-it/when"

# Each stage of the graph records when it started and ended, and fails on
# the branch "failing" when it is the stage named test.
MARK = ('m="$MARKS/$SLUICE_RUN_ID.$SLUICE_STAGE"; date +%s.%N > "$m.start"; sleep 1; '
        'if [ "$SLUICE_STAGE" = test ] && [ "$SLUICE_REF" = refs/heads/failing ]; then '
        'exit 1; fi; date +%s.%N > "$m.end"')

# A stage whose process group holds a background sleep and a grandchild that
# ignores SIGTERM; it records every pid, then waits.
STUBBORN = ('m="$MARKS/$SLUICE_RUN_ID"; sleep 1000 & echo $! >> "$m.pids"; '
            "sh -c 'trap \"\" TERM; while :; do sleep 0.2; done' & echo $! >> \"$m.pids\"; "
            'echo $$ >> "$m.pids"; touch "$m.ready"; wait')

# Starts a daemon in a session of its own (setsid -f: it becomes the
# worker's child at once), waits for the stage quick to end and for the
# worker's search for leftovers after it, then needs its daemon still there.
SERVE = ('m="$MARKS/$SLUICE_RUN_ID"; '
         "setsid -f sh -c 'echo $$ > \"$0.daemon\"; exec sleep 300' \"$m\" "
         '</dev/null >/dev/null 2>&1; '
         'while [ ! -s "$m.daemon" ]; do sleep 0.05; done; '
         'while [ ! -f "$m.quick" ]; do sleep 0.05; done; sleep 2; '
         'kill -0 "$(cat "$m.daemon")"')

# Fails its first attempt of each run, succeeds after; records the sha and
# how often build ran.
FLAKY_TEST = ('m="$MARKS/$SLUICE_RUN_ID"; echo "$SLUICE_SHA" >> "$m.test-shas"; '
              'if [ ! -f "$m.failed-once" ]; then touch "$m.failed-once"; exit 1; fi')


# The most stages a pipeline may have (config/config.h: PIPELINE_STAGES_MAX).
STAGES_MAX = 4096

PRIVATE_TOKEN = "ghs_" + "S3CR3T" * 6
PRIVATE_URL = "http://x-access-token:%s@127.0.0.1:1/acme/private.git" % PRIVATE_TOKEN


def control_pipelines(repo, marks):
    env = {"MARKS": marks}

    def p(name, stages, **kw):
        return pipeline(name, "sluice-it/" + name, checkout=repo.url, vars_=env, stages=stages,
                        **kw)
    return {
        "graph.yaml": p("graph", {
            "build": {"sh": MARK},
            "test": {"sh": MARK, "needs": ["build"]},
            "integration-test": {"kind": "test", "sh": MARK, "needs": ["build"]},
            "scan": {"sh": MARK, "needs": ["test", "integration-test"]},
            "push": {"sh": MARK, "needs": ["scan"]},
        }, branches=["**"]),
        "stubborn.yaml": p("stubborn", {
            "build": {"sh": STUBBORN},
            "test": {"sh": "true", "needs": ["build"]},
        }),
        "slowpoke.yaml": p("slowpoke", {"build": {"sh": STUBBORN, "timeout": "2s"}}),
        "flaky.yaml": p("flaky", {
            "build": {"sh": 'echo built >> "$MARKS/$SLUICE_RUN_ID.builds"'},
            "test": {"sh": FLAKY_TEST, "needs": ["build"]},
            "push": {"sh": "true", "needs": ["test"]},
        }),
        "daemon.yaml": p("daemon", {
            "serve": {"kind": "build", "sh": SERVE},
            "quick": {"kind": "test", "sh": 'touch "$MARKS/$SLUICE_RUN_ID.quick"'},
        }),
        # d needs two stages that fail: retrying the one that then
        # succeeds leaves d skipped, for the other still failed.
        "two-failed.yaml": p("two-failed", {
            "x": {"kind": "build", "sh": FLAKY_TEST},
            "y": {"kind": "build", "sh": "exit 1"},
            "d": {"kind": "test", "sh": "true", "needs": ["x", "y"]},
        }),
        "when.yaml": p("when", {
            "build": {"sh": "true"},
            "docs": {"kind": "build", "sh": "true", "needs": ["build"],
                     "when": {"branches": ["main"]}},
            "release": {"kind": "push", "sh": "true", "when": {"tags": ["v*"]}},
            "publish": {"kind": "push", "sh": "true", "needs": ["release"]},
            "by-hand": {"kind": "test", "sh": "true", "when": {"events": ["manual"]}},
        }, branches=["**"], tags=["v*"]),
        # As many stages as a pipeline may have, of the one kind no worker of
        # this stack takes: they stay queued.
        "huge.yaml": p("huge", {"s%d" % i: {"kind": "deploy", "sh": "true"}
                                for i in range(STAGES_MAX)}),
        # A private repository's token in its URL; nothing answers there.
        "private.yaml": pipeline("private", "sluice-it/private", checkout=PRIVATE_URL,
                                 stages={"build": {"sh": "true"}}),
    }


@pytest.fixture(scope="module")
def ctl_stack():
    marks = {}

    def files(repo, root):
        marks["dir"] = os.path.join(root, "marks")
        os.makedirs(marks["dir"])
        git(repo.path, "branch", "failing", repo.head)
        git(repo.path, "-c", "user.name=t", "-c", "user.email=t@t", "tag", "-a", "v1.0",
            "-m", "release", repo.second)
        return control_pipelines(repo, marks["dir"])
    for s in started_stack("sluice-ctl-", files, workers=(("build,test,scan,push", 4),)):
        s.marks = marks["dir"]
        yield s


def post(stack, path, body=None):
    from conftest import http_request
    data = json.dumps(body).encode() if body is not None else b""
    status, parsed, _ = http_request(stack.agent_port, "POST", path, data,
                                     {"Content-Type": "application/json"})
    return status, parsed


def trigger(stack, name, ref="main", sha=None):
    body = {"ref": ref}
    if sha:
        body["sha"] = sha
    status, run = post(stack, "/api/v1/pipelines/%s/trigger" % name, body)
    assert status == 202, (status, run)
    return run


def mark(stack, run, name):
    path = os.path.join(stack.marks, "%s.%s" % (run, name))
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


# --- the stage graph --------------------------------------------------------

def test_parallel_stages_overlap_and_scan_waits_for_both(ctl_stack):
    run = ctl_stack.wait_run(trigger(ctl_stack, "graph")["id"], timeout=60)
    assert run["status"] == "succeeded", run
    t = {s: (float(mark(ctl_stack, run["id"], s + ".start")),
             float(mark(ctl_stack, run["id"], s + ".end")))
         for s in ("build", "test", "integration-test", "scan", "push")}
    assert t["test"][0] >= t["build"][1] and t["integration-test"][0] >= t["build"][1], t
    # Each sleeps a second: started before the other ended means they overlapped.
    assert t["test"][0] < t["integration-test"][1], t
    assert t["integration-test"][0] < t["test"][1], t
    assert t["scan"][0] >= max(t["test"][1], t["integration-test"][1]), t
    assert t["push"][0] >= t["scan"][1], t


def test_failing_test_skips_scan_and_push(ctl_stack):
    run = ctl_stack.wait_run(trigger(ctl_stack, "graph", ref="failing")["id"], timeout=60)
    stages = run["stages"]
    assert run["status"] == "failed", run
    assert stages["test"]["status"] == "failed" and stages["test"]["exit_code"] == 1, run
    assert stages["integration-test"]["status"] == "succeeded", run
    for name in ("scan", "push"):
        assert stages[name]["status"] == "skipped", run
        assert stages[name]["started"] is None, run
        assert mark(ctl_stack, run["id"], name + ".start") is None


# --- when -------------------------------------------------------------------

def test_when_skips_stages_and_a_skipped_need_is_satisfied(ctl_stack):
    status, body = ctl_stack.post_hook("push", ctl_stack.push_payload(WHEN_REPO))
    assert status == 202 and len(body["runs"]) == 1, (status, body)
    run = ctl_stack.wait_run(body["runs"][0])
    stages = run["stages"]
    assert run["status"] == "succeeded", run
    assert stages["docs"]["status"] == "succeeded", run
    assert stages["release"]["status"] == "skipped", run
    assert stages["release"]["skip_reason"] == "when: branch main: when lists tags only", run
    assert stages["by-hand"]["skip_reason"] == "when: event push is not in when.events", run
    # publish needs only release, which its when left out: it runs.
    assert stages["publish"]["status"] == "succeeded", run


def test_when_on_a_manual_tag_run(ctl_stack):
    run = ctl_stack.wait_run(trigger(ctl_stack, "when", ref="refs/tags/v1.0")["id"])
    stages = run["stages"]
    assert run["status"] == "succeeded" and run["event"] == "manual", run
    # The annotated tag is peeled to the commit it names.
    assert run["sha"] == ctl_stack.repo.second, run
    assert stages["release"]["status"] == "succeeded", run
    assert stages["by-hand"]["status"] == "succeeded", run
    assert stages["docs"]["status"] == "skipped", run
    assert stages["docs"]["skip_reason"] == "when: tag v1.0: when lists branches only", run


# --- cancel and timeout leave nothing behind --------------------------------

def recorded_pids(stack, run):
    wait_for("the stage to start its processes",
             lambda: mark(stack, run, "ready") is not None, 30, stack.procs)
    pids = [int(p) for p in mark(stack, run, "pids").split()]
    assert len(pids) == 3 and all(alive(p) for p in pids), pids
    return pids


def test_cancel_kills_the_stage_process_group(ctl_stack):
    run = trigger(ctl_stack, "stubborn")["id"]
    pids = recorded_pids(ctl_stack, run)
    status, body = post(ctl_stack, "/api/v1/runs/%s/cancel" % run)
    assert status == 202, (status, body)
    wait_for("the stage to end cancelled",
             lambda: ctl_stack.run(run)["stages"]["build"]["status"] == "cancelled", 15)
    wait_for("every process of the stage to be gone",
             lambda: not any(alive(p) for p in pids), 5)
    final = ctl_stack.run(run)
    assert final["status"] == "cancelled", final
    assert final["stages"]["test"]["status"] == "cancelled", final


def stage_statuses(stack, run):
    stages = stack.run(run)["stages"]
    assert len(stages) == STAGES_MAX, len(stages)
    return {s["status"] for s in stages.values()}


def test_a_run_of_the_most_stages_is_cancelled_and_retried_whole(ctl_stack):
    run = trigger(ctl_stack, "huge")["id"]
    assert stage_statuses(ctl_stack, run) == {"queued"}
    path = "/api/v1/runs/%s/%%s" % run
    status, body = post(ctl_stack, path % "cancel")
    assert status == 202 and body["status"] == "cancelled", (status, body.get("error"))
    assert stage_statuses(ctl_stack, run) == {"cancelled"}
    status, body = post(ctl_stack, path % "retry")
    assert status == 202 and body["status"] == "running", (status, body.get("error"))
    assert stage_statuses(ctl_stack, run) == {"queued"}
    # The log line counts what was queued again, and names only the first.
    [line] = [l for l in ctl_stack.agent_log_lines("run retried") if run in l]
    assert len(line) < 1024, line[:200]
    assert "queued=%d" % STAGES_MAX in line and "s0" in line, line
    # Cancelled again, it leaves no job queued for a later test.
    status, body = post(ctl_stack, path % "cancel")
    assert status == 202 and body["status"] == "cancelled", (status, body.get("error"))
    assert stage_statuses(ctl_stack, run) == {"cancelled"}


def test_a_stage_s_daemon_serves_it_until_it_ends_then_is_killed(ctl_stack):
    """A daemon a stage started in a session of its own lives while its
    stage runs, though another stage of the worker ends meanwhile; once its
    stage has ended, it is killed."""
    run = ctl_stack.wait_run(trigger(ctl_stack, "daemon")["id"])
    assert run["status"] == "succeeded", run
    daemon = int(mark(ctl_stack, run["id"], "daemon"))
    wait_for("the daemon to be killed", lambda: not alive(daemon), 10)


def test_timeout_kills_the_stage_process_group(ctl_stack):
    run = trigger(ctl_stack, "slowpoke")["id"]
    pids = recorded_pids(ctl_stack, run)
    final = ctl_stack.wait_run(run, timeout=20)
    assert final["stages"]["build"]["status"] == "timed_out", final
    wait_for("every process of the stage to be gone",
             lambda: not any(alive(p) for p in pids), 5)


# --- retry ------------------------------------------------------------------

def test_retry_of_a_failed_stage_reuses_the_sha_and_builds_nothing_again(ctl_stack):
    sha = ctl_stack.repo.second
    run = ctl_stack.wait_run(trigger(ctl_stack, "flaky", sha=sha)["id"])
    assert run["status"] == "failed", run
    assert run["stages"]["push"]["status"] == "skipped", run
    r = ctl_stack.ctl("retry", run["id"], "test")
    assert r.returncode == 0, r.stderr
    assert "running" in r.stdout, r.stdout
    done = ctl_stack.wait_run(run["id"])
    stages = done["stages"]
    assert done["status"] == "succeeded" and done["sha"] == sha, done
    assert stages["test"]["attempt"] == 2, done
    assert [a["status"] for a in stages["test"]["attempts"]] == ["failed", "succeeded"], done
    assert stages["build"]["attempt"] == 1 and stages["push"]["status"] == "succeeded", done
    assert mark(ctl_stack, run["id"], "builds") == "built\n"
    assert mark(ctl_stack, run["id"], "test-shas") == sha + "\n" + sha + "\n"


def test_retry_of_a_stage_leaves_skipped_what_another_failed_need_still_blocks(ctl_stack):
    """d needs x and y, which both failed. Retrying x alone, which then
    succeeds, cannot let d run: y still failed. d stays skipped and the run
    ends failed again, instead of waiting for a d nothing would ever queue."""
    run = ctl_stack.wait_run(trigger(ctl_stack, "two-failed")["id"])
    assert run["status"] == "failed", run
    assert run["stages"]["d"]["status"] == "skipped", run
    status, body = post(ctl_stack, "/api/v1/runs/%s/stages/x/retry" % run["id"])
    assert status == 202 and body["status"] == "running", (status, body)
    assert body["stages"]["d"]["status"] == "skipped", body
    done = ctl_stack.wait_run(run["id"])
    stages = done["stages"]
    assert done["status"] == "failed", done
    assert (stages["x"]["status"], stages["x"]["attempt"]) == ("succeeded", 2), done
    assert (stages["y"]["status"], stages["d"]["status"]) == ("failed", "skipped"), done


def test_retry_of_a_whole_run(ctl_stack):
    run = ctl_stack.wait_run(trigger(ctl_stack, "flaky")["id"])
    assert run["status"] == "failed", run
    status, body = post(ctl_stack, "/api/v1/runs/%s/retry" % run["id"])
    assert status == 202 and body["status"] == "running", (status, body)
    assert body["stages"]["test"]["status"] in ("queued", "running", "succeeded"), body
    done = ctl_stack.wait_run(run["id"])
    assert done["status"] == "succeeded", done
    assert done["stages"]["build"]["attempt"] == 1, done
    assert mark(ctl_stack, run["id"], "builds") == "built\n"
    # Nothing is left to retry now.
    status, body = post(ctl_stack, "/api/v1/runs/%s/retry" % run["id"])
    assert status == 409 and body["error"]["message"] == "nothing to retry: the run succeeded"


def test_retry_refuses_what_it_cannot_retry(ctl_stack):
    run = ctl_stack.wait_run(trigger(ctl_stack, "graph", ref="failing")["id"], timeout=60)
    path = "/api/v1/runs/%s/stages/%%s/retry" % run["id"]
    status, body = post(ctl_stack, path % "build")
    assert status == 409, (status, body)
    assert body["error"]["message"] == ("stage build succeeded: only a failed, timed out, "
                                        "cancelled or lost stage is retried")
    assert post(ctl_stack, path % "nope")[0] == 404
    assert post(ctl_stack, "/api/v1/runs/r_nope/retry")[0] == 404
    r = ctl_stack.ctl("retry", run["id"], "scan")
    assert r.returncode == 1 and "stage scan is skipped" in r.stderr, r


# --- manual trigger ---------------------------------------------------------

def test_trigger_with_a_sha_builds_that_commit(ctl_stack):
    first = ctl_stack.repo.first
    run = ctl_stack.wait_run(trigger(ctl_stack, "flaky", ref="refs/heads/main", sha=first)["id"])
    assert run["sha"] == first and run["ref"] == "refs/heads/main", run
    assert run["event"] == "manual" and run["pipeline"] == "flaky", run


def test_trigger_without_a_sha_resolves_the_branch(ctl_stack):
    r = ctl_stack.ctl("trigger", "when", "--ref", "main", "--json")
    assert r.returncode == 0, r.stderr
    run = json.loads(r.stdout)
    assert run["sha"] == ctl_stack.repo.head and run["ref"] == "refs/heads/main", run
    assert ctl_stack.wait_run(run["id"])["status"] == "succeeded"


@pytest.mark.parametrize("path,body,code,message", [
    ("nope", {"ref": "main"}, 404, "no such pipeline"),
    ("when", {"ref": "a..b"}, 400, "ref a..b is not a valid git ref name"),
    ("when", {"ref": "refs/pull/1/head"}, 400,
     "ref must be a branch (refs/heads/...) or a tag (refs/tags/...)"),
    ("when", {}, 400, "ref: a string is required (\"main\", \"refs/tags/v1\")"),
    ("when", {"ref": "main", "sha": "xyz"}, 400,
     "sha must be a commit id of 40 (or 64) hexadecimal digits, not all zeros"),
    # git's name for no commit: the run would fail at its checkout.
    ("when", {"ref": "main", "sha": "0" * 40}, 400,
     "sha must be a commit id of 40 (or 64) hexadecimal digits, not all zeros"),
])
def test_trigger_refuses_bad_requests(ctl_stack, path, body, code, message):
    status, answer = post(ctl_stack, "/api/v1/pipelines/%s/trigger" % path, body)
    assert status == code and answer["error"]["message"] == message, (status, answer)


def test_trigger_of_an_unknown_ref_is_unprocessable(ctl_stack):
    status, answer = post(ctl_stack, "/api/v1/pipelines/when/trigger", {"ref": "no-such"})
    assert status == 422, (status, answer)
    assert answer["error"]["message"] == "ref refs/heads/no-such not found in %s" % \
        ctl_stack.repo.url


def test_trigger_never_shows_the_token_of_a_repository_url(ctl_stack):
    """git ls-remote fails; neither the answer nor the agent's log holds the
    token of checkout.url, as the stage log does not, nor the pipeline's
    definition the API shows."""
    status, answer = post(ctl_stack, "/api/v1/pipelines/private/trigger", {"ref": "main"})
    assert status == 502, (status, answer)
    assert answer["error"]["message"].startswith(
        "cannot list the refs of http://***@127.0.0.1:1/acme/private.git: "), answer
    assert ctl_stack.agent_log_lines("git ls-remote failed"), "no log line"
    assert not ctl_stack.agent_log_lines(PRIVATE_TOKEN)
    status, body = ctl_stack.get("/api/v1/pipelines/private")
    assert status == 200, body
    assert body["definition"]["checkout"]["url"] == \
        "http://***@127.0.0.1:1/acme/private.git", body


def test_pipelines_are_listed_with_their_definition(ctl_stack):
    status, body = ctl_stack.get("/api/v1/pipelines")
    assert status == 200, body
    graph = [p for p in body["pipelines"] if p["name"] == "graph"][0]
    assert graph["stages"] == ["build", "test", "integration-test", "scan", "push"], graph
    assert graph["repository"] == GRAPH_REPO and graph["environments"] == [], graph
    status, one = ctl_stack.get("/api/v1/pipelines/when")
    assert status == 200 and one["definition"]["stages"]["docs"]["when"] == \
        {"branches": ["main"]}, one
    assert ctl_stack.get("/api/v1/pipelines/nope")[0] == 404
    r = ctl_stack.ctl("pipelines")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["PIPELINE", "REPOSITORY", "EVENTS", "STAGES", "ENVIRONMENTS"]
    assert ["graph", GRAPH_REPO, "push", "build,test,integration-test,scan,push", "-"] in \
        [line.split() for line in lines[1:]], r.stdout


# --- sluicectl validate -----------------------------------------------------

def validate(tmp_path, *names):
    return subprocess.run([binary("sluicectl"), "validate"] + list(names), cwd=tmp_path,
                          capture_output=True, text=True, timeout=10)


def test_validate_accepts_good_files_and_names_the_errors_of_bad_ones(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    (tmp_path / "pipelines.d").mkdir()
    (tmp_path / "pipelines.d" / "secret").write_text("s3cret\n")
    good = ("name: app\ntrigger:\n  github: {repository: acme/app, secret_file: secret}\n"
            "stages:\n  build: {run: [make]}\n  test: {run: [make, test], needs: [build],\n"
            "         when: {branches: [main]}}\n")
    (tmp_path / "app.yaml").write_text(good)
    (tmp_path / "pipelines.d" / "app.yaml").write_text(good)
    (tmp_path / "bad.yaml").write_text(
        "name: bad\ntrigger:\n  github: {repository: acme/app, secret_file: secret}\n"
        "stages:\n  build: {run: [make], when: {events: [push, tag]}}\n")
    (tmp_path / "sluice.yaml").write_text("pipelines_dir: pipelines.d\n")
    r = validate(tmp_path, "app.yaml", "sluice.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "app.yaml: ok (pipeline app: 2 stages)",
        "sluice.yaml: ok (settings; 1 pipeline in %s/pipelines.d: app)" % tmp_path,
    ], r.stdout
    (tmp_path / "chain.yaml").write_text(
        good.replace("name: app", "name: chain") +
        "environments:\n  development: {deploy: {sh: ./deploy.sh}}\n"
        "  staging: {after: development, approval: required, deploy: {sh: ./deploy.sh}}\n"
        "  production: {after: staging, deploy: {sh: ./deploy.sh}}\n")
    r = validate(tmp_path, "chain.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ("chain.yaml: ok (pipeline chain: 2 stages, environments "
                        "development \u2192 staging \u2192 production)\n"), r.stdout
    r = validate(tmp_path, "app.yaml", "bad.yaml")
    assert r.returncode == 1
    assert r.stdout == "app.yaml: ok (pipeline app: 2 stages)\n"
    assert r.stderr == ('bad.yaml:5:46: stages.build.when.events[1]: unknown event "tag" '
                        "(known: push, pull_request, manual)\n")
    r = validate(tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("sluicectl: validate: missing FILE\n")


def test_token_hash_shows_a_token_only_once_its_line_is_written():
    r = subprocess.run([binary("sluicectl"), "token", "hash", "ci", "admin"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    token = r.stderr.splitlines()[-1]
    assert r.stdout == "ci admin %s\n" % hashlib.sha256(token.encode()).hexdigest(), r
    # Standard output full (>> a file on a full disk): the line is not in
    # the file, so the token, which nothing would accept, is not shown.
    with open("/dev/full", "w") as full:
        r = subprocess.run([binary("sluicectl"), "token", "hash", "ci", "admin"], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=10)
    assert r.returncode == 1
    assert r.stderr == "sluicectl: token hash: cannot write the token's line: write error\n", \
        r.stderr


def test_validate_reads_the_files_the_agent_needs_to_start(tmp_path):
    """The tokens file, the GitHub token and the TLS files: an agent refuses
    to start when it cannot use them, so validate does not call them ok."""
    (tmp_path / "pipelines.d").mkdir()
    hashed = subprocess.run([binary("sluicectl"), "token", "hash", "ci", "admin"],
                            capture_output=True, text=True, timeout=10, check=True)
    (tmp_path / "tokens").write_text(hashed.stdout)
    (tmp_path / "github-token").write_text("ghp_x\n")
    head = "pipelines_dir: pipelines.d\napi:\n  tokens_file: tokens\n"
    good = head + "github:\n  token_file: github-token\n"
    (tmp_path / "sluice.yaml").write_text(good)
    r = validate(tmp_path, "sluice.yaml")
    assert r.returncode == 0, r.stderr
    (tmp_path / "tokens").write_text("ci admin 1234\n")
    r = validate(tmp_path, "sluice.yaml")
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert r.stderr.startswith("sluice.yaml:3:16: api.tokens_file: %s/tokens:1: expected the "
                               "SHA-256 of the token" % tmp_path), r.stderr
    (tmp_path / "tokens").write_text(hashed.stdout)
    (tmp_path / "github-token").write_text("ghp_x\nghp_y\n")
    r = validate(tmp_path, "sluice.yaml")
    assert r.returncode == 1 and r.stderr == (
        'sluice.yaml:5:15: github.token_file: "%s/github-token": must hold one token on one '
        "line\n" % tmp_path), r.stderr
    # A credential is the agent's, not to be found where validate runs.
    (tmp_path / "sluice.yaml").write_text(
        head + 'github:\n  token_file: "${CREDENTIALS_DIRECTORY}/github-token"\n')
    r = validate(tmp_path, "sluice.yaml")
    assert r.returncode == 0, r.stderr
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "sluice.yaml").write_text(
        head + "agent:\n  tls_cert: cert.pem\n  tls_key: cert.pem\n")
    r = validate(tmp_path, "sluice.yaml")
    assert r.returncode == 1 and r.stderr.startswith(
        'sluice.yaml:5:13: agent.tls_cert: "%s/cert.pem": cannot load the TLS certificate: '
        % tmp_path), r.stderr
