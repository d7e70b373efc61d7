"""sluicectl against a running agent: runs, show, show --json, logs."""

import json
import subprocess
import time

import pytest

from conftest import Redis, binary, pipeline, scaled, started_stack, wait_for

QUIET_REPO = "sluice-it/quiet"


def stage_line(out, stage, status):
    """The line of a table that names stage and status as separate words."""
    return [l for l in out.splitlines() if stage in l.split() and status in l.split()]


def test_runs_lists_the_run(stack, push_run, failed_run):
    r = stack.ctl("runs")
    assert r.returncode == 0, r.stderr
    assert push_run["id"] in r.stdout and failed_run["id"] in r.stdout, r.stdout


def test_runs_uses_sluice_url_from_the_environment(stack, push_run):
    r = stack.ctl("runs", env={"SLUICE_URL": stack.url})
    assert r.returncode == 0, r.stderr
    assert push_run["id"] in r.stdout, r.stdout


def test_a_url_with_blanks_and_a_line_break_around_it_is_the_url(stack, push_run):
    """A variable filled from a file keeps the file's newline."""
    r = stack.ctl("runs", env={"SLUICE_URL": " %s/\n" % stack.url})
    assert r.returncode == 0, r.stderr
    assert push_run["id"] in r.stdout, r.stdout


def test_a_blank_url_option_is_a_usage_error(stack):
    r = stack.ctl("--url", " \n", "runs", env={"SLUICE_URL": stack.url})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--url needs a non-empty value" in r.stderr, r.stderr


def test_a_url_of_another_scheme_is_refused_before_any_request(stack):
    """--url is an option like the others: a usage error, status 2; the
    same from $SLUICE_URL is an error of the command, status 1."""
    r = stack.ctl("--url", "ftp://127.0.0.1:21", "runs", env={"SLUICE_URL": stack.url})
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--url: not an http:// or https:// URL" in r.stderr, r.stderr
    r = stack.ctl("runs", env={"SLUICE_URL": "file:///etc/passwd"})
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "SLUICE_URL: not an http:// or https:// URL" in r.stderr, r.stderr
    # Without a scheme it is http, as before.
    r = stack.ctl("runs", env={"SLUICE_URL": stack.url[len("http://"):]})
    assert r.returncode == 0, r.stderr


def test_a_url_naming_the_api_path_gets_an_error_that_names_the_address(stack):
    """The agent answers "no such endpoint": the message says which URL was
    asked and what --url should be, not only that."""
    url = stack.url + "/api/v1"
    r = stack.ctl("runs", env={"SLUICE_URL": url})
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "%s/api/v1/runs" % url in r.stderr, r.stderr
    assert "--url or $SLUICE_URL" in r.stderr, r.stderr


def test_an_unknown_run_is_not_taken_for_a_wrong_url(stack):
    r = stack.ctl("show", "r_doesnotexist")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "no such run" in r.stderr and "--url" not in r.stderr, r.stderr


def test_runs_pages_older_with_before_and_newer_with_after(stack, push_run, failed_run):
    ids = [run["id"] for run in stack.runs()]
    older = stack.ctl("runs", "--limit", "1", "--before", ids[0])
    assert older.returncode == 0, older.stderr
    rows = older.stdout.splitlines()
    assert rows[1].split()[0] == ids[1], older.stdout
    assert "newer: --after %s" % ids[1] in rows, older.stdout
    newer = stack.ctl("runs", "--limit", "1", "--after", ids[1])
    assert newer.returncode == 0, newer.stderr
    rows = newer.stdout.splitlines()
    assert rows[1].split()[0] == ids[0], newer.stdout
    assert "more: --before %s" % ids[0] in rows and not any(
        r.startswith("newer:") for r in rows), newer.stdout
    both = stack.ctl("runs", "--before", ids[0], "--after", ids[1])
    assert both.returncode == 2 and "not both" in both.stderr, both


def test_show_prints_stages_and_statuses(stack, push_run):
    r = stack.ctl("show", push_run["id"])
    assert r.returncode == 0, r.stderr
    assert push_run["id"] in r.stdout and "succeeded" in r.stdout, r.stdout
    assert stage_line(r.stdout, "build", "succeeded"), r.stdout
    assert stage_line(r.stdout, "test", "succeeded"), r.stdout


def test_show_of_a_failed_run_names_the_failed_and_skipped_stages(stack, failed_run):
    r = stack.ctl("show", failed_run["id"])
    assert r.returncode == 0, r.stderr
    assert stage_line(r.stdout, "build", "failed"), r.stdout
    assert stage_line(r.stdout, "test", "skipped"), r.stdout


def test_show_json_equals_the_api(stack, push_run):
    r = stack.ctl("show", push_run["id"], "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == stack.run(push_run["id"])


def test_logs_prints_the_stage_log(stack, push_run):
    r = stack.ctl("logs", push_run["id"], "build")
    assert r.returncode == 0, r.stderr
    expected = [entry["line"] for entry in stack.log(push_run["id"], "build")]
    assert "building %s on refs/heads/main" % stack.repo.head in expected
    for line in expected:
        assert line in r.stdout, (line, r.stdout)


def test_unknown_run_is_an_error(stack):
    for args in (["show", "r_doesnotexist"], ["show", "r_doesnotexist", "--json"],
                 ["logs", "r_doesnotexist", "build"]):
        r = stack.ctl(*args)
        assert r.returncode != 0, (args, r.stdout)
        assert r.stderr.strip(), args


def test_unknown_stage_is_an_error(stack, push_run):
    r = stack.ctl("logs", push_run["id"], "nosuchstage")
    assert r.returncode != 0, r.stdout
    assert r.stderr.strip()


def test_unreachable_agent_is_an_error(stack):
    r = stack.ctl("runs", env={"SLUICE_URL": "http://127.0.0.1:1"})
    assert r.returncode != 0, r.stdout
    assert r.stderr.strip()


@pytest.fixture
def quiet():
    """A stack whose one stage prints a line, is quiet for 6 s, and prints
    another."""
    yield from started_stack("sluice-it-ctl-", lambda repo, root: {
        "quiet.yaml": pipeline("quiet", QUIET_REPO, checkout=repo.url, stages={
            "build": {"sh": "echo start; sleep 6; echo done", "checkout": False}})},
        workers=(("build", 1),), extra_settings={"redis": {"timeout": "1s"}})


def quiet_run(s):
    """A run of the quiet pipeline, once its stage has printed "start"."""
    status, body = s.post_hook("push", s.push_payload(QUIET_REPO))
    assert status == 202, body
    run_id = body["runs"][0]
    wait_for("the stage's first line", lambda: any(
        entry["line"] == "start" for entry in s.log(run_id, "build")), scaled(20))
    return run_id


def follow(s, run_id):
    return subprocess.Popen([binary("sluicectl"), "--url", s.url, "logs", run_id, "build",
                             "-f"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop_redis(s):
    """Stops the stack's redis-server, what it held saved for start_redis."""
    with Redis(s.redis_port) as r:
        r.call("SAVE")
    s.redis.stop()
    s.procs.remove(s.redis)


def test_logs_follow_goes_on_over_a_redis_restart(quiet):
    run_id = quiet_run(quiet)
    f = follow(quiet, run_id)
    assert f.stdout.readline() == "start\n"
    # The stream's polls of Redis fail meanwhile: that took the agent down.
    stop_redis(quiet)
    time.sleep(2)
    quiet.start_redis()
    out, err = f.communicate(timeout=scaled(60))
    assert f.returncode == 0, err
    assert "done" in out.splitlines(), out


def test_logs_follow_started_while_redis_is_away_waits_for_it(quiet):
    run_id = quiet_run(quiet)
    stop_redis(quiet)
    f = follow(quiet, run_id)
    # The agent answers 503 meanwhile, as it is there to answer.
    time.sleep(2)
    assert f.poll() is None, f.communicate()
    quiet.start_redis()
    out, err = f.communicate(timeout=scaled(60))
    assert f.returncode == 0, err
    assert out.splitlines()[:1] == ["start"] and "done" in out.splitlines(), out
