"""sluicectl against a running agent: runs, show, show --json, logs."""

import json


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
