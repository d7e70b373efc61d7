"""The dashboard in a real browser: starts a sluice stack (tests/harness.py)
with the pipelines dashboard.mjs exercises, then runs that script with
Debian's chromium against the agent. Prints "browser: N passed, M failed".

Screenshots stay in <tmp>/sluice-browser-*/screenshots (printed at the end);
everything else there is removed unless the test fails or SLUICE_KEEP_TMP is
set.
"""

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from harness import RUN_STATUSES, STAGE_STATUSES, LocalRepo, Stack, pipeline  # noqa: E402
from resp import Redis  # noqa: E402

WEB_REPO = "sluice-browser/web"
RELEASE_REPO = "sluice-browser/release"
FLAKY_REPO = "sluice-browser/flaky"
# A branch name that is markup (and one git allows: no spaces): it must
# show as text.
EVIL_BRANCH = "<img/src=x/onerror=alert(1)>"
# More runs than a page of the runs list holds (100), all older than those
# the script starts.
ARCHIVED_RUNS = 120


def pipelines(repo):
    steps = 'for i in 1 2 3 4 5 6; do echo "compiling unit $i of 6"; sleep 0.4; done'
    web = pipeline("web", WEB_REPO, branches=["**"], checkout=repo.url, stages={
        "build": {"sh": steps},
        # A progress bar and colours, as a terminal would show them.
        "unit": {"kind": "test", "needs": ["build"],
                 "sh": r"printf 'fetching 10%%\rfetching 60%%\rfetching 100%%\n"
                       r"\033[1;32mok\033[0m unit tests pass\033[K\n'; sleep 0.5"},
        "lint": {"kind": "test", "sh": "echo lint clean >&2", "needs": ["build"]},
        "package": {"kind": "build", "sh": "echo packaged $SLUICE_SHA_SHORT", "needs": ["unit", "lint"]},
    })
    release = pipeline("release", RELEASE_REPO, checkout=repo.url, stages={
        "build": {"sh": "echo built"},
        # Names an object's prototype has: the page must not take them for
        # its own bookkeeping.
        "constructor": {"kind": "build", "sh": "echo named so", "needs": ["build"]},
        "__proto__": {"kind": "build", "sh": "true"},
    })
    release["environments"] = {
        "development": {"deploy": {"sh": "echo deploying to $SLUICE_ENV"}},
        "staging": {"after": "development", "approval": "required",
                    "deploy": {"sh": "echo deploying to $SLUICE_ENV"}},
        # A canary the page watches move: the steps are recorded by a real
        # rollout on the worker, the weights by an exec provider that says
        # what it would do; the last pause waits for a click on Promote.
        "production": {
            "after": "staging",
            "image": "registry.example/release:${SLUICE_SHA_SHORT}",
            "provider": {"type": "exec", "actions": {
                "apply": {"sh": "echo deploying $SLUICE_IMAGE as the canary"},
                "set_weight": {"sh": "echo canary weight $SLUICE_WEIGHT"},
                "promote": {"sh": "echo $SLUICE_IMAGE is stable now"}}},
            "strategy": {"type": "Canary", "steps": [
                {"setWeight": 20}, {"pause": {"duration": "3s"}},
                {"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]},
        },
    }
    # Fails its first attempt only: retried from the page.
    flaky = pipeline("flaky", FLAKY_REPO, checkout=repo.url, stages={
        "build": {"sh": 'echo "attempt $SLUICE_ATTEMPT"; test "$SLUICE_ATTEMPT" -gt 1'},
    })
    return {"web.yaml": web, "release.yaml": release, "flaky.yaml": flaky}


def archive_runs(stack, n):
    """n finished runs of web from a day ago, recorded as intake records a
    run; their ids, newest first."""
    day_ago = int(time.time() * 1000) - 86_400_000
    ids = []
    with Redis(stack.redis_port) as r:
        for i in range(n):
            created = day_ago - i * 60_000
            run = "r_%012x%012x" % (created, i)
            r.call("HSET", "sluice:run:" + run, "id", run, "status", "succeeded",
                   "created", created, "started", created, "finished", created + 1000,
                   "pipeline", "web", "repository", WEB_REPO, "event", "push",
                   "ref", "refs/heads/main", "sha", "%040x" % i)
            r.call("ZADD", "sluice:runs", created, run)
            r.call("ZADD", "sluice:pipeline:web:runs", created, run)
            ids.append(run)
    return ids


def main():
    root = tempfile.mkdtemp(prefix="sluice-browser-")
    shots = os.path.join(root, "screenshots")
    os.makedirs(shots)
    repo = LocalRepo(os.path.join(root, "repo"))
    # Reads are public; deciding needs a token of role approve.
    tokens = {"viewer": ("read", secrets.token_hex(16)), "approver": ("approve", secrets.token_hex(16)),
              "operator": ("admin", secrets.token_hex(16))}
    tokens_file = os.path.join(root, "tokens")
    with open(tokens_file, "w") as f:
        for name, (role, tok) in tokens.items():
            f.write("%s %s %s\n" % (name, role, hashlib.sha256(tok.encode()).hexdigest()))
    stack = Stack(root, repo, pipelines(repo), workers=(("build,test,deploy", 4),),
                  extra_settings={"agent": {"scheduler_interval": "100ms"},
                                  "api": {"tokens_file": tokens_file, "public_reads": True}},
                  log_level="info")
    rc = 1
    try:
        stack.start()
        setup = {
            "url": stack.url,
            "secret": stack.secret,
            "screenshots": shots,
            "evil_branch": EVIL_BRANCH,
            "run_statuses": RUN_STATUSES,
            "stage_statuses": STAGE_STATUSES,
            "archived": archive_runs(stack, ARCHIVED_RUNS),
            "tokens": {name: tok for name, (role, tok) in tokens.items()},
            "payloads": {
                "web": stack.push_payload(WEB_REPO),
                "web_evil": stack.push_payload(WEB_REPO, ref="refs/heads/" + EVIL_BRANCH),
                "release": stack.push_payload(RELEASE_REPO),
                "flaky": stack.push_payload(FLAKY_REPO),
            },
        }
        path = os.path.join(root, "setup.json")
        with open(path, "w") as f:
            json.dump(setup, f)
        rc = subprocess.run(["node", os.path.join(HERE, "dashboard.mjs"), path],
                            timeout=240).returncode
    except Exception as e:  # the stack did not start, or the script hung
        print("browser: %s" % e, file=sys.stderr)
        print("browser: 0 passed, 1 failed")
    finally:
        stack.stop()
        if rc != 0:
            print(stack.report(), file=sys.stderr)
    if rc == 0 and not os.environ.get("SLUICE_KEEP_TMP"):
        for name in os.listdir(root):
            if name != "screenshots":
                p = os.path.join(root, name)
                shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.unlink(p)
    print("browser: screenshots in %s" % shots)
    return rc


if __name__ == "__main__":
    sys.exit(main())
