"""SIGHUP reloads: the agent picks up a new pipeline file and refuses an
invalid one (naming its position) while the old pipelines keep working,
refuses whole a sluice.yaml whose GitHub or API token file it cannot read,
or whose commit statuses it cannot make a Kafka consumer for, and verifies
webhooks under a secret changed in its file, and names a new
agent.public_url as needing a restart; the worker applies a new concurrency and log cap and reports settings that
need a restart; both report the --log-level a reload keeps."""

import contextlib
import os
import subprocess

import pytest

from conftest import (binary, free_port, hup_and_wait, limits, log_text, pipeline,
                      started_stack, to_yaml, wait_for)

KEPT_REPO = "sluice-it/kept"
ADDED_REPO = "sluice-it/added"
LOUD_REPO = "sluice-it/loud"


def pipelines(repo, root):
    return {"kept.yaml": pipeline("kept", KEPT_REPO, checkout=repo.url,
                                  stages={"build": {"run": ["true"]}}),
            "loud.yaml": pipeline("loud", LOUD_REPO, checkout=repo.url,
                                  stages={"build": {"sh": "seq 1 200"}})}


@pytest.fixture(scope="module")
def reload_stack():
    yield from started_stack("sluice-reload-", pipelines, workers=(("build", 1),))


def run_for(stack, repository):
    status, body = stack.post_hook("push", stack.push_payload(repository))
    assert status == 202, (status, body)
    return body.get("runs", [])


def test_agent_reload_adds_a_pipeline_and_refuses_an_invalid_file(reload_stack):
    s = reload_stack
    pdir = os.path.join(s.root, "pipelines.d")
    assert run_for(s, ADDED_REPO) == []

    with open(os.path.join(pdir, "added.yaml"), "w") as f:
        f.write(to_yaml(pipeline("added", ADDED_REPO, checkout=s.repo.url,
                                 stages={"build": {"run": ["true"]}})))
    log = hup_and_wait(s.agent, "configuration reloaded")
    assert 'msg="pipeline added" pipeline=added' in log, log
    runs = run_for(s, ADDED_REPO)
    assert len(runs) == 1
    assert s.wait_run(runs[0])["status"] == "succeeded"

    # Line 5, column 16: the value of stages.build.timeout.
    with open(os.path.join(pdir, "broken.yaml"), "w") as f:
        f.write('name: broken\ntrigger:\n  github: {repository: "sluice-it/broken", '
                'secret_file: webhook-secret}\nstages:\n  build: {run: [true], '
                'timeout: "soon"}\n')
    try:
        log = hup_and_wait(s.agent, "reload refused")
        refused = [l for l in log.splitlines() if "reload refused" in l][-1]
        assert "broken.yaml:5:" in refused and "stages.build.timeout" in refused, refused
        # The running configuration is untouched: both pipelines still start runs.
        for repository in (KEPT_REPO, ADDED_REPO):
            runs = run_for(s, repository)
            assert len(runs) == 1
            assert s.wait_run(runs[0])["status"] == "succeeded"
    finally:
        os.unlink(os.path.join(pdir, "broken.yaml"))

    os.unlink(os.path.join(pdir, "added.yaml"))
    log = hup_and_wait(s.agent, "configuration reloaded")
    assert 'msg="pipeline removed" pipeline=added' in log, log
    assert run_for(s, ADDED_REPO) == []


def test_agent_reload_takes_a_new_webhook_secret(reload_stack):
    s = reload_stack
    path = os.path.join(s.root, "pipelines.d", "webhook-secret")
    new_secret = "rotated-" + s.secret
    with open(path, "w") as f:
        f.write(new_secret)
    try:
        hup_and_wait(s.agent, "configuration reloaded")
        # The old secret no longer verifies; the new one does.
        status, body = s.post_hook("push", s.push_payload(KEPT_REPO))
        assert status == 401 and body["error"]["code"] == "bad_signature", (status, body)
        status, body = s.post_hook("push", s.push_payload(KEPT_REPO), secret=new_secret)
        assert status == 202 and len(body["runs"]) == 1, (status, body)
        assert s.wait_run(body["runs"][0])["status"] == "succeeded"
    finally:
        with open(path, "w") as f:
            f.write(s.secret)
        hup_and_wait(s.agent, "configuration reloaded")
    assert len(run_for(s, KEPT_REPO)) == 1


@pytest.mark.parametrize("content,why", [
    (None, "No such file or directory"),
    ("", "must hold one token on one line"),
    ("one-token\nanother-token\n", "must hold one token on one line"),
], ids=["missing", "empty", "two-lines"])
def test_agent_reload_refuses_a_github_token_file_it_cannot_read(reload_stack, content, why):
    s = reload_stack
    token = os.path.join(s.root, "github-token")
    if content is not None:
        with open(token, "w") as f:
            f.write(content)
    refuses_whole(s, "github:\n  token_file: github-token\n",
                  ':15: github.token_file: \\"%s\\": %s' % (token, why))
    if content is not None:
        os.unlink(token)


def test_agent_reload_refuses_an_api_tokens_file_it_cannot_read(reload_stack):
    s = reload_stack
    refuses_whole(s, "api:\n  tokens_file: no-such-tokens\n",
                  ":16: api.tokens_file: %s: No such file or directory"
                  % os.path.join(s.root, "no-such-tokens"))


def test_agent_reload_refuses_statuses_it_cannot_consume_events_for(reload_stack):
    """Turning commit statuses on needs a new Kafka consumer. An agent short
    of file descriptors (many connections open) reads its files but cannot
    make that consumer: the reload is refused whole, saying why."""
    s = reload_stack
    token = os.path.join(s.root, "github-token")
    with open(token, "w") as f:
        f.write("ghp_reload\n")
    pid = s.agent.popen.pid
    before = limits(pid)

    def hup_short_of_descriptors(agent, marker):
        # Three descriptors left: enough to read a file at a time, too few
        # for a consumer's sockets and wake-up pipe.
        used = {int(fd) for fd in os.listdir("/proc/%d/fd" % pid)}
        free = limit = 0
        while free < 3:
            free += limit not in used
            limit += 1
        subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % (limit, before[1])],
                       check=True)
        try:
            return hup_and_wait(agent, marker)
        finally:
            subprocess.run(["prlimit", "--pid", str(pid), "--nofile=%d:%d" % before],
                           check=True)
    with open(s.config) as f:
        original = f.read()
    try:
        log = refuses_whole(s, "github:\n  token_file: github-token\n", None,
                            hup=hup_short_of_descriptors)
        refused = [l for l in log.splitlines() if "reload refused" in l][-1]
        assert "commit statuses: cannot consume sluice.events: " in refused, refused
        assert "Too many open files" in refused, refused
        assert "posting commit statuses" not in log_text(s.agent)
        # With descriptors to spare, the same reload turns statuses on.
        with open(s.config, "w") as f:
            f.write(original + "github:\n  token_file: github-token\n")
        log = hup_and_wait(s.agent, "configuration reloaded")
        assert 'msg="posting commit statuses"' in log, log
    finally:
        with open(s.config, "w") as f:
            f.write(original)
        os.unlink(token)
    hup_and_wait(s.agent, "commit statuses off")


def refuses_whole(s, settings, error, hup=hup_and_wait):
    """Appends settings to sluice.yaml and adds a pipeline file: the reload
    (hup(agent, marker) sends SIGHUP) is refused with error at the last
    setting's line (error None: at none), and neither applies. The log up
    to the refusal."""
    pdir = os.path.join(s.root, "pipelines.d")
    with open(s.config) as f:
        original = f.read()
    try:
        with open(s.config, "w") as f:
            f.write(original + settings)
        with open(os.path.join(pdir, "added.yaml"), "w") as f:
            f.write(to_yaml(pipeline("added", ADDED_REPO, checkout=s.repo.url,
                                     stages={"build": {"run": ["true"]}})))
        log = hup(s.agent, "reload refused")
        refused = [l for l in log.splitlines() if "reload refused" in l][-1]
        line = (original + settings).count("\n")
        if error is not None:
            assert "sluice.yaml:%d%s" % (line, error) in refused, refused
        assert run_for(s, ADDED_REPO) == []
        runs = run_for(s, KEPT_REPO)
        assert len(runs) == 1
        assert s.wait_run(runs[0])["status"] == "succeeded"
    finally:
        with open(s.config, "w") as f:
            f.write(original)
        os.unlink(os.path.join(pdir, "added.yaml"))
    hup_and_wait(s.agent, "configuration reloaded")
    return log


def restart_keys(log):
    return [l.split("key=")[1] for l in log.splitlines() if "needs a restart" in l]


def test_agent_reload_reports_a_new_public_url_under_its_own_name(reload_stack):
    s = reload_stack
    # A second agent whose address is given as --listen, beside the stack's.
    listened = s._spawn("listen-agent", [
        binary("sluice-agent"), "--config", s.config,
        "--listen", "127.0.0.1:%d" % free_port()])
    wait_for("the agent to listen", lambda: "listening" in log_text(listened), 10, [listened])
    with open(s.config) as f:
        original = f.read()
    try:
        with open(s.config, "w") as f:
            f.write(original.replace("agent:\n", "agent:\n  public_url: https://ci.example\n"))
        for agent in (s.agent, listened):
            before = log_text(agent).count("needs a restart")
            log = hup_and_wait(agent, "configuration reloaded")
            assert restart_keys(log)[before:] == ["agent.public_url"], log
    finally:
        with open(s.config, "w") as f:
            f.write(original)
        hup_and_wait(s.agent, "configuration reloaded")
        listened.stop()
        s.procs.remove(listened)


def test_worker_reload_applies_concurrency_and_reports_restart_settings(reload_stack):
    s = reload_stack
    # A worker without --concurrency, so the file's value is the one in force.
    worker = s._spawn("reload-worker", [
        binary("sluice-worker"), "--config", s.config, "--kind", "test"])
    wait_for("the worker to consume", lambda: "consuming" in log_text(worker), 10, [worker])
    with open(s.config) as f:
        original = f.read()
    try:
        with open(s.config, "w") as f:
            f.write(original.replace("worker:\n",
                                     "worker:\n  concurrency: 3\n  checkout_timeout: 20m\n")
                    .replace('"redis://127.0.0.1:', '"redis://localhost:') + "log_level: debug\n")
        log = hup_and_wait(worker, "configuration reloaded")
        restart = [l for l in log.splitlines() if "needs a restart" in l]
        assert any("key=redis.url" in l for l in restart), log
        reloaded = [l for l in log.splitlines() if "configuration reloaded" in l][-1]
        assert "concurrency=3" in reloaded and "log_level=debug" in reloaded, reloaded
        assert "checkout_timeout_ms=1200000" in reloaded, reloaded

        # An invalid file keeps everything as it was.
        with open(s.config, "w") as f:
            f.write(original.replace("worker:\n", "worker:\n  concurrency: lots\n"))
        log = hup_and_wait(worker, "reload refused")
        refused = [l for l in log.splitlines() if "reload refused" in l][-1]
        assert "sluice.yaml:" in refused and "worker.concurrency" in refused, refused
    finally:
        with open(s.config, "w") as f:
            f.write(original)
    worker.stop()
    s.procs.remove(worker)


@contextlib.contextmanager
def settings_edited(stack, edit, procs):
    """sluice.yaml of stack as edit(its text) returns while the block runs;
    then the file as it was, reloaded by each of procs."""
    with open(stack.config) as f:
        original = f.read()
    try:
        with open(stack.config, "w") as f:
            f.write(edit(original))
        yield
    finally:
        with open(stack.config, "w") as f:
            f.write(original)
        for proc in procs:
            hup_and_wait(proc, "configuration reloaded")


def test_worker_reload_applies_log_cap_and_reports_artifacts_dir(reload_stack):
    s = reload_stack
    worker = next(p for p in s.procs if p.name == "worker-1")
    shared = os.path.join(s.root, "shared")
    with settings_edited(s, lambda text: text.replace(
            "worker:\n", "worker:\n  log_cap: 1KiB\n  artifacts_dir: %s\n" % shared), [worker]):
        log = hup_and_wait(worker, "configuration reloaded")
        restart = [l for l in log.splitlines() if "needs a restart" in l]
        assert any("key=worker.artifacts_dir" in l for l in restart), log
        runs = run_for(s, LOUD_REPO)
        assert len(runs) == 1
        assert s.wait_run(runs[0])["status"] == "succeeded"
        lines = [l["line"] for l in s.log(runs[0], "build")]
        assert any("dropped: log cap of 1 KiB reached" in l for l in lines), lines


def test_worker_reload_reports_a_new_metrics_address_unless_the_command_line_gives_it(
        reload_stack):
    """--metrics-listen wins over the file, after a restart as well: a
    change in the file is no setting that waits for one."""
    s = reload_stack
    given = s._spawn("metrics-worker", [
        binary("sluice-worker"), "--config", s.config, "--kind", "test",
        "--metrics-listen", "127.0.0.1:%d" % free_port()])
    plain = s._spawn("plain-worker", [
        binary("sluice-worker"), "--config", s.config, "--kind", "test"])
    for w in (given, plain):
        wait_for("the worker to consume", lambda: "consuming" in log_text(w), 10, [w])
    try:
        with settings_edited(s, lambda text: text.replace(
                "worker:\n", "worker:\n  metrics_listen: 127.0.0.1:%d\n" % free_port()),
                [given, plain]):
            for w, keys in ((given, []), (plain, ["worker.metrics_listen"])):
                before = log_text(w).count("needs a restart")
                log = hup_and_wait(w, "configuration reloaded")
                assert restart_keys(log)[before:] == keys, (w.name, log)
    finally:
        for w in (given, plain):
            w.stop()
            s.procs.remove(w)


def test_reload_reports_the_log_level_the_command_line_keeps(reload_stack):
    # The stack's agent and worker run with --log-level debug, which a
    # reload keeps: the level reported is that one, not the file's.
    s = reload_stack
    worker = next(p for p in s.procs if p.name == "worker-1")
    with settings_edited(s, lambda text: text + "log_level: warn\n", [s.agent, worker]):
        for proc in (s.agent, worker):
            log = hup_and_wait(proc, "configuration reloaded")
            reloaded = [l for l in log.splitlines() if "configuration reloaded" in l][-1]
            assert "log_level=debug" in reloaded, reloaded


@pytest.mark.parametrize("listen", ["nonsense", "127.0.0.1:0", "127.0.0.1:99999", ":8080"])
def test_a_listen_address_the_agent_cannot_use_is_refused_with_status_2(tmp_path, listen):
    # Refused with the other options, before anything is logged or loaded.
    r = subprocess.run([binary("sluice-agent"), "--config", str(tmp_path / "none.yaml"),
                        "--listen", listen], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr == "sluice-agent: bad --listen %s: expected HOST:PORT\n" % listen, r.stderr
