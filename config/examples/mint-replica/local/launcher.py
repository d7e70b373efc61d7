#!/usr/bin/env python3
"""Starts the example's instances on request, outside sluice.

    launcher.py SPOOL_DIR

sluice runs a deployment's commands each in a process group of its own and
ends whatever is left of it when the command exits, so a deploy script
cannot start a long-lived server itself: it asks this process, which stands
in for what would run the service elsewhere (systemd, a cluster). A request
is a file SPOOL_DIR/NAME.req, written beside and renamed into place, of
lines:

    PIDFILE
    LOGFILE
    WORKING_DIRECTORY
    ARGV0
    ARGV1 ...

The launcher starts ARGV in a session of its own (output appended to
LOGFILE, environment PATH, HOME and LANG only), writes its pid to PIDFILE
(atomically) and removes the request. The scripts stop instances by their
pid files. On SIGTERM or SIGINT the launcher stops every instance it started
that still runs (SIGTERM, then SIGKILL after 5 s) and exits. Its own pid is
in SPOOL_DIR/launcher.pid.
"""

import os
import signal
import subprocess
import sys
import time

POLL_SECONDS = 0.1
GRACE_SECONDS = 5.0


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop()


def log(msg, **fields):
    extra = "".join(" %s=%s" % (k, v) for k, v in fields.items())
    print('level=info msg="%s"%s' % (msg, extra), flush=True)


def write_atomically(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def start(req, children):
    with open(req) as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) < 4:
        log("bad request", file=req, lines=len(lines))
        os.unlink(req)
        return
    pidfile, logfile, cwd, argv = lines[0], lines[1], lines[2], lines[3:]
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    try:
        with open(logfile, "ab") as out, open(os.devnull, "rb") as devnull:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=devnull, stdout=out, stderr=out,
                                    env=env, start_new_session=True)
    except OSError as e:
        log("cannot start", file=req, error='"%s"' % e)
        os.unlink(req)
        return
    children[proc.pid] = proc
    write_atomically(pidfile, "%d\n" % proc.pid)
    os.unlink(req)
    log("started", name=os.path.basename(req)[:-4], pid=proc.pid)


def stop_all(children):
    live = [p for p in children.values() if p.poll() is None]
    for p in live:
        p.terminate()
    deadline = time.monotonic() + GRACE_SECONDS
    for p in live:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    log("stopped", instances=len(live))


def main(argv):
    if len(argv) != 2:
        print("usage: launcher.py SPOOL_DIR", file=sys.stderr)
        return 2
    spool = os.path.abspath(argv[1])
    os.makedirs(spool, exist_ok=True)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children = {}
    write_atomically(os.path.join(spool, "launcher.pid"), "%d\n" % os.getpid())
    log("watching", spool=spool)
    try:
        while True:
            for name in sorted(os.listdir(spool)):
                if name.endswith(".req"):
                    start(os.path.join(spool, name), children)
            # Reap the instances that ended (stopped by a script or not).
            for pid, proc in list(children.items()):
                code = proc.poll()
                if code is not None:
                    del children[pid]
                    log("exited", pid=pid, status=code)
            time.sleep(POLL_SECONDS)
    except Stop:
        pass
    finally:
        stop_all(children)
        try:
            os.unlink(os.path.join(spool, "launcher.pid"))
        except FileNotFoundError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
