"""make bench: the scaling curve: the agent's memory and the pickup latency of
a fresh run with 10, 100, 1,000 and 10,000 runs in flight, and the agent's
and the worker's memory idle and under load.

"In flight" here: a run accepted and recorded whose stage job waits queued,
because no worker of its kind (scan) runs; the run stays `queued`, its job
sits in Kafka and its stage hash in Redis until a worker would claim it.
Those runs are created through the intake by a closed-loop client over
many keep-alive connections. Between levels, a fresh run of another
pipeline (one `checkout: false` stage of kind build) is posted one at a
time while a build worker runs: its pickup is webhook sent → stage process
started, as in bench/intake.py.

Writes the "Scaling" section of bench/results.md (benchlib.main).
"""

import os
import secrets
import selectors
import socket
import sys
import threading
import time

import benchlib
from benchlib import (KEY_PREFIX, BenchError, cpu_seconds, machine, machine_line, memory_kib,
                      mib, ms, pair, percentile, print_machine, push, push_body, redis_cli,
                      verdict)
from intake import read_starts, request_builder, response_status

import harness  # noqa: E402 (benchlib puts tests/ on the path)

LEVELS = (10, 100, 1000, 10000)
CONNECTIONS = 32
PICKUPS, PICKUP_WARMUP = 20, 10
LOAD_RUNS = 200
WORKER_CONCURRENCY = 4
TARGET_RATIO = 2.0

INFLIGHT_REPO = "sluice-bench/inflight"
PICKUP_REPO = "sluice-bench/scaling-pickup"


def flood(port, body, signature, n):
    """Posts n signed pushes, each a distinct delivery, over CONNECTIONS
    keep-alive connections, each with one request outstanding; returns the
    seconds it took. Every answer must be 202."""
    build = request_builder(port, "/hooks/github", body, signature, secrets.token_hex(4))
    sel = selectors.DefaultSelector()
    conns = []
    sent = answered = 0
    start = time.perf_counter()
    try:
        for _ in range(min(CONNECTIONS, n)):
            s = socket.create_connection(("127.0.0.1", port))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = bytearray()
            sel.register(s, selectors.EVENT_READ, buf)
            conns.append(s)
            s.sendall(build(sent))
            sent += 1
        while answered < n:
            events = sel.select(30)
            if not events:
                raise BenchError("%d requests unanswered after 30 s" % (sent - answered))
            for key, _ in events:
                buf = key.data
                data = key.fileobj.recv(1 << 16)
                if not data:
                    raise BenchError("the agent closed a connection before answering")
                buf += data
                status = response_status(buf)
                if status is None:
                    continue
                if status != 202:
                    raise BenchError("a push was answered %d, not 202" % status)
                buf.clear()
                answered += 1
                if sent < n:
                    key.fileobj.sendall(build(sent))
                    sent += 1
    finally:
        for s in conns:
            s.close()
        sel.close()
    return time.perf_counter() - start


class Sampler:
    """Samples the memory of processes every 20 ms in a thread until
    stopped; peak() is the sample with the highest VmRSS of each."""

    def __init__(self, procs):
        self.procs = procs
        self.samples = {name: [] for name in procs}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.done.is_set():
            for name, p in self.procs.items():
                self.samples[name].append(memory_kib(p.popen.pid))
            self.done.wait(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.done.set()
        self.thread.join()

    def peak(self, name):
        return max(self.samples[name], key=lambda m: m["VmRSS"])


def wait_settled(stack, procs, timeout=120):
    """Waits until the outbox is empty (every job recorded has been
    published) and procs use under 5 % of a CPU for half a second."""
    deadline = time.monotonic() + timeout
    while int(redis_cli(stack.redis_port, ["XLEN", KEY_PREFIX + "outbox"])[0] or 0):
        if time.monotonic() > deadline:
            raise BenchError("the outbox was not drained after %ds" % timeout)
        time.sleep(0.1)
    last = sum(cpu_seconds(p.popen.pid) for p in procs)
    while True:
        time.sleep(0.5)
        now = sum(cpu_seconds(p.popen.pid) for p in procs)
        if now - last < 0.025:
            return
        if time.monotonic() > deadline:
            raise BenchError("the agent still busy after %ds" % timeout)
        last = now


def pickups(stack, starts, body, n):
    """n pushes one after another, each once the previous stage process has
    started; seconds from POST sent to stage process started."""
    out = []
    for _ in range(n):
        rid, at, _ = push(stack, body)
        out.append((read_starts(starts, [rid], 30)[rid] - at) / 1e9)
    return out


def queued_runs(stack):
    """Runs of the in-flight pipeline by status, from one page of the API."""
    counts = {}
    for r in stack.runs("pipeline=inflight&limit=500"):
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def pipelines(repo, starts):
    inflight = harness.pipeline("inflight", INFLIGHT_REPO, branches=["main"],
                                checkout=repo.url,
                                stages={"scan": {"run": ["true"], "checkout": False}})
    stage = {"run": ["sh", "-c", 'exec date +%s%N > "$1/$2"', "sh", "${STARTS}",
                     "${SLUICE_RUN_ID}"], "checkout": False}
    pick = harness.pipeline("scaling-pickup", PICKUP_REPO, branches=["main"],
                            checkout=repo.url, vars_={"STARTS": starts},
                            stages={"build": stage})
    return {"inflight.yaml": inflight, "pickup.yaml": pick}


def bench(root):
    info = machine()
    print_machine(info)
    repo = harness.LocalRepo(os.path.join(root, "repo"))
    starts = os.path.join(root, "starts")
    os.makedirs(starts)
    stack = harness.Stack(root, repo, pipelines(repo, starts), workers=(), log_level="info",
                          extra_settings=benchlib.stack_settings())

    def body():
        worker = stack.start_worker("build", WORKER_CONCURRENCY, "worker")
        agent = stack.agent
        flood_body = push_body(stack, INFLIGHT_REPO)
        signature = harness.sign(stack.secret, flood_body)
        pick_body = push_body(stack, PICKUP_REPO)

        pickups(stack, starts, pick_body, PICKUP_WARMUP)
        wait_settled(stack, [agent, worker])
        idle = {"agent": memory_kib(agent.popen.pid), "worker": memory_kib(worker.popen.pid)}
        print("idle: agent %s, worker %s" % (mib(idle["agent"]["VmRSS"]),
                                            mib(idle["worker"]["VmRSS"])), flush=True)

        levels, floods = [], []
        with Sampler({"agent": agent}) as flooding:
            have = 0
            for level in LEVELS:
                took = flood(stack.agent_port, flood_body, signature, level - have)
                floods.append((level - have, took))
                have = level
                wait_settled(stack, [agent])
                mem = memory_kib(agent.popen.pid)
                lat = pickups(stack, starts, pick_body, PICKUPS)
                wait_settled(stack, [agent, worker])
                levels.append((level, mem, (percentile(lat, 50), percentile(lat, 99))))
                print("%5d in flight: agent VmRSS %s RssAnon %s; pickup p50 %s p99 %s "
                      "(%d pushes in %.2f s)" % (
                          level, mib(mem["VmRSS"]), mib(mem["RssAnon"]),
                          ms(levels[-1][2][0]), ms(levels[-1][2][1]), floods[-1][0], took),
                      flush=True)
        total = int(redis_cli(stack.redis_port, ["ZCARD", KEY_PREFIX + "runs"])[0])
        expected = LEVELS[-1] + PICKUP_WARMUP + PICKUPS * len(LEVELS)
        if total != expected:
            raise BenchError("%d runs recorded, expected %d" % (total, expected))
        statuses = queued_runs(stack)
        if set(statuses) != {"queued"}:
            raise BenchError("in-flight runs not all queued: %s" % statuses)

        # Stage load: LOAD_RUNS no-op stages posted at once through the
        # build worker, 10,000 runs still in flight.
        sent = []
        with Sampler({"agent": agent, "worker": worker}) as load:
            for _ in range(LOAD_RUNS):
                sent.append(push(stack, pick_body)[0])
            read_starts(starts, sent, 120)
            harness.wait_for("the load runs to finish", lambda: all(
                stack.run(r)["status"] in harness.TERMINAL for r in sent[-10:]), 60, [worker])
        wait_settled(stack, [agent, worker])
        after = {"agent": memory_kib(agent.popen.pid), "worker": memory_kib(worker.popen.pid)}
        return {"idle": idle, "levels": levels, "floods": floods,
                "flood_peak": flooding.peak("agent"), "load": {
                    "agent": load.peak("agent"), "worker": load.peak("worker")},
                "after": after, "hwm": memory_kib(agent.popen.pid)["VmHWM"],
                "worker_hwm": memory_kib(worker.popen.pid)["VmHWM"]}

    r = benchlib.run_stack(stack, body)
    return report(info, r)


def rss(m):
    return "%s (RssAnon %s)" % (mib(m["VmRSS"]), mib(m["RssAnon"]))


def report(info, r):
    first, last = r["levels"][0][1], r["levels"][-1][1]
    ratio = last["VmRSS"] / first["VmRSS"]
    anon_ratio = last["RssAnon"] / first["RssAnon"]
    lines = ["## Scaling (bench/scaling.py)", "", machine_line(info), ""]
    rows = []
    for (level, mem, lat), (n, took) in zip(r["levels"], r["floods"]):
        rows.append(("%d" % level, mib(mem["VmRSS"]), mib(mem["RssAnon"]), pair(lat),
                     "%d in %.2f s (%.0f/s)" % (n, took, n / took)))
    lines += benchlib.table(
        ("runs in flight", "agent VmRSS", "agent RssAnon",
         "pickup of a fresh run, p50 / p99 (%d runs)" % PICKUPS, "pushes added to get there"),
        rows)
    lines += ["", "| figure | sluice | target | |", "|---|---|---|---|"]
    lines.append("| agent VmRSS at 10,000 runs in flight ÷ at 10 | %.2f× (RssAnon %.2f×) | "
                 "≤ %.0f× | %s |" % (ratio, anon_ratio, TARGET_RATIO,
                                     verdict(ratio <= TARGET_RATIO)))
    lines.append("| agent idle (after %d warm-up runs) | %s | | |"
                 % (PICKUP_WARMUP, rss(r["idle"]["agent"])))
    lines.append("| agent while 10,000 pushes were taken (highest sample); VmHWM at the end "
                 "| %s; %s | | |" % (rss(r["flood_peak"]), mib(r["hwm"])))
    lines.append("| agent while %d no-op stages ran, 10,000 runs in flight (highest sample) "
                 "| %s | | |" % (LOAD_RUNS, rss(r["load"]["agent"])))
    lines.append("| agent idle afterwards | %s | | |" % rss(r["after"]["agent"]))
    lines.append("| worker idle (after %d warm-up runs) | %s | | |"
                 % (PICKUP_WARMUP, rss(r["idle"]["worker"])))
    lines.append("| worker while %d no-op stages ran at concurrency %d (highest sample); "
                 "VmHWM | %s; %s | | |" % (LOAD_RUNS, WORKER_CONCURRENCY,
                                           rss(r["load"]["worker"]), mib(r["worker_hwm"])))
    lines.append("| worker idle afterwards | %s | | |" % rss(r["after"]["worker"]))
    lines += [
        "",
        "How each figure is taken:",
        "",
        "- in flight: a run of a pipeline whose one stage is of kind scan, which no worker "
        "takes: the run stays `queued`, its job waits in Kafka and its stage hash in Redis. "
        "Each level adds runs through the intake (signed pushes, each a distinct delivery, "
        "%d keep-alive connections with one request outstanding each) until that many are in "
        "flight (checked at the end: every run recorded, every in-flight run still queued). "
        "The agent's requeue of unclaimed jobs (agent.requeue_after, default 60 s) is left "
        "on, but the levels are taken well within it." % CONNECTIONS,
        "- memory: VmRSS (= RssAnon, the process's own memory, + RssFile, pages of the "
        "binary and libraries it touched) from /proc/<pid>/status once the agent has "
        "published every job of the level (outbox empty) and uses no CPU for 0.5 s; under "
        "load: every 20 ms, the highest sample.",
        "- pickup at each level: a build worker (--concurrency %d) runs; %d pushes of a "
        "pipeline of one `checkout: false` stage (kind build) `sh -c 'exec date +%%s%%N > "
        "FILE'`, each sent once the previous stage process has started; webhook sent → "
        "stage process started (after %d warm-up runs before the first level)."
        % (WORKER_CONCURRENCY, PICKUPS, PICKUP_WARMUP),
        "- stage load: with 10,000 runs in flight, %d pushes of that pipeline one after "
        "another without waiting, the worker running them %d at a time."
        % (LOAD_RUNS, WORKER_CONCURRENCY),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(benchlib.main(__doc__, bench))
