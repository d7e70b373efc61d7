"""What the benchmark scripts of bench/ share: the machine they ran on, the
way figures are printed (percentiles, verdicts, markdown tables), Redis and
API access to a harness.Stack, and main(), which runs one benchmark in a
temporary directory and writes its section of bench/results.md to the file
given with --section (bench/run.sh assembles the sections).

Each section opens with the machine line of when its benchmark started, so
that every figure is read beside the machine it was taken on. Any failure of
the benchmark itself exits non-zero; a missed target does not, but is printed
as **MISSED**. Standard library only.
"""

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import harness  # noqa: E402

KEY_PREFIX = "sluice:"

# The settings every benchmark stack runs with besides its own, as `make run`'s
# do (config/examples/mint-replica/sluice.yaml): the devbroker answers a fetch
# that finds no message only once kafka.fetch_wait is over, so with it that
# wait is each Kafka hop's latency.
DEVBROKER_SETTINGS = {"kafka": {"fetch_wait": "2ms"}}


def stack_settings(extra=None):
    """DEVBROKER_SETTINGS with a benchmark's own settings merged in."""
    return harness.merge_settings(DEVBROKER_SETTINGS, extra)


class BenchError(Exception):
    pass


def percentile(values, p):
    """Nearest rank; values need not be sorted."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100.0 * len(s)) - 1)]


def ms(seconds):
    return "%.2f ms" % (seconds * 1e3)


def pair(values):
    """'p50 / p99' of a (p50, p99) pair of seconds."""
    return "%s / %s" % (ms(values[0]), ms(values[1]))


def p50_p99(values):
    return percentile(values, 50), percentile(values, 99)


def verdict(ok):
    return "met" if ok else "**MISSED**"


def table(header, rows):
    lines = ["| %s |" % " | ".join(header), "|%s" % ("---|" * len(header))]
    lines += ["| %s |" % " | ".join(row) for row in rows]
    return lines


# --- the machine -----------------------------------------------------------

def machine():
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "kernel": os.uname().release,
            "load": load,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def machine_line(info):
    return ("- machine: %d CPU (%s), Linux %s; load average %s when this benchmark started "
            "(%s)" % (info["nproc"], info["cpu"], info["kernel"], info["load"], info["date"]))


def print_machine(info):
    print("machine: %(nproc)d CPU, %(cpu)s, Linux %(kernel)s, load average %(load)s at start"
          % info, flush=True)


def version(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return "unknown"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def cpu_seconds(pid):
    """User + system CPU of a process and of its children it has waited for."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def memory_kib(pid):
    """VmRSS, its parts RssAnon and RssFile, and VmHWM of a process, in KiB."""
    found = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def mib(kib):
    return "%.1f MiB" % (kib / 1024.0)


# --- Redis and the API -----------------------------------------------------

def redis_cli(port, *commands):
    """Runs each command (a list of words) through redis-cli; one output line each."""
    text = "".join(" ".join(c) + "\n" for c in commands)
    out = subprocess.run(["redis-cli", "-p", str(port)], input=text, capture_output=True,
                         text=True, timeout=60)
    if out.returncode != 0:
        raise BenchError("redis-cli failed: %s" % out.stderr.strip())
    return out.stdout.splitlines()


def stage_times(port, run_ids, stages, fields=("queued_at", "started", "finished")):
    """{(run, stage): {field: ms or None}} read from the stage hashes in one go."""
    keys = [(r, s) for r in run_ids for s in stages]
    lines = redis_cli(port, *[
        ["HMGET", "%srun:%s:stage:%s" % (KEY_PREFIX, r, s)] + list(fields) for r, s in keys])
    if len(lines) != len(keys) * len(fields):
        raise BenchError("redis-cli gave %d lines for %d fields" % (
            len(lines), len(keys) * len(fields)))
    out = {}
    for i, key in enumerate(keys):
        values = lines[i * len(fields):(i + 1) * len(fields)]
        out[key] = {f: int(v) if v else None for f, v in zip(fields, values)}
    return out


def api_ms(text):
    """Milliseconds since the epoch of an API time (2026-01-02T03:04:05.678Z)."""
    dt = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    return round(dt.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)


def push(stack, body):
    """POSTs a signed push; (run id, ns when sent, ns when answered)."""
    at = time.time_ns()
    status, reply = stack.post_hook("push", body)
    answered = time.time_ns()
    if status != 202 or len((reply or {}).get("runs", [])) != 1:
        raise BenchError("push answered %s %s, not 202 with one run" % (status, reply))
    return reply["runs"][0], at, answered


def push_body(stack, repository):
    return json.dumps(stack.push_payload(repository), indent=2).encode()


def wait_finished(stack, run_ids, timeout, poll=0.05):
    """Polls the API until every run has ended; {run: run view}. A run that
    did not succeed fails the benchmark."""
    done = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(run_ids):
        for rid in run_ids:
            if rid not in done:
                run = stack.run(rid)
                if run["status"] in harness.TERMINAL:
                    if run["status"] != "succeeded":
                        raise BenchError("run %s ended %s: %s" % (
                            rid, run["status"], json.dumps(run["stages"])))
                    done[rid] = run
                else:
                    break
        if len(done) < len(run_ids):
            if time.monotonic() > deadline:
                raise BenchError("%d of %d runs not finished after %ds" % (
                    len(run_ids) - len(done), len(run_ids), timeout))
            time.sleep(poll)
    return done


# --- running one benchmark -------------------------------------------------

def main(doc, bench):
    """bench(root) returns the markdown section; it is printed and written
    to --section."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--build", required=True, help="directory holding the sluice binaries")
    ap.add_argument("--section", required=True, help="markdown file the section is written to")
    args = ap.parse_args()
    harness.BUILD = os.path.abspath(args.build)
    # SIGTERM unwinds like Ctrl-C, so every process started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = tempfile.mkdtemp(prefix="sluice-bench-")
    try:
        text = bench(root)
    except BenchError as e:
        print("bench failed: %s" % e, file=sys.stderr)
        return 1
    finally:
        if os.environ.get("SLUICE_KEEP_TMP"):
            print("kept %s" % root, file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    print(text)
    with open(args.section, "w") as f:
        f.write(text)
    return 0


def run_stack(stack, body, extra=()):
    """Runs body() with the stack started, and stops it (and extra Procs)
    whatever happens; on failure the processes' logs are printed."""
    try:
        stack.start()
        return body()
    except BaseException:
        print(stack.report(), file=sys.stderr)
        for p in extra:
            print(p.describe(), file=sys.stderr)
        raise
    finally:
        for p in extra:
            p.stop()
        stack.stop()
