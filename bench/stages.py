"""make bench: what one sluice-worker costs per stage and in memory.

Phases, on one stack over loopback:
1. floor: this machine's bare fork+exec+wait of /bin/true (os.posix_spawn +
   os.waitpid, no shell, empty environment), FLOOR_SPAWNS times, in 1, 2 and
   4 loops side by side (one process each): wall time per spawn;
2. throughput: for each concurrency 1, 2 and 4, one worker (its own kind, so
   that each pipeline goes through that worker alone) is fed one run of
   STAGES independent `run: [/bin/true]` stages with `checkout: false`;
   stages per second from the first stage's start (its claim) to the last
   one's finish, times from the API; then, at concurrency 4, the same stages
   spread over MULTI_RUNS runs posted at once (so over several partitions),
   and one run with the usual checkout, for information;
3. memory: the concurrency-4 worker's VmRSS idle, and while it runs four
   `sleep 2` stages.
Per-stage overhead at concurrency c is 1/throughput − floor with c loops:
the wall time per stage the runner adds to the bare spawn at the same
parallelism.

Writes the "Stages" section of bench/results.md (benchlib.main).
"""

import os
import sys
import time

import benchlib
from benchlib import (BenchError, api_ms, cpu_seconds, machine, machine_line, mib, ms,
                      percentile, print_machine, push, push_body, memory_kib, table, verdict,
                      wait_finished)

import harness  # noqa: E402 (benchlib puts tests/ on the path)

FLOOR_SPAWNS = 2000
STAGES = 100
# With checkout a stage takes tens of ms, and stalls make the run long.
CHECKOUT_STAGES = 40
MULTI_RUNS = 4
# A claim that follows the one before after this long is a stall.
STALL_S = 0.1
CONCURRENCY_KIND = {1: "build", 2: "test", 4: "scan"}
SLEEP_STAGES, SLEEP_S = 4, 2
# Idle: a second and a half after the last stage, by when a worker has
# given back what its stages freed (workers/worker.h: WORKER_IDLE_TRIM_MS).
IDLE_S = 1.5

TARGET_OVERHEAD_MS = 1.0
TARGET_IDLE_RSS_MIB = 8.0


def us(seconds):
    return "%.0f µs" % (seconds * 1e6)


# --- the floor -------------------------------------------------------------

def spawn_floor(loops, n):
    """Wall seconds per spawn when `loops` processes side by side each
    posix_spawn and wait for /bin/true n // loops times."""
    per = n // loops
    t0 = time.perf_counter()
    pids = []
    for _ in range(loops):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for _ in range(per):
                    os.waitpid(os.posix_spawn("/bin/true", ["/bin/true"], {}), 0)
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0:
            raise BenchError("a spawn loop failed")
    return (time.perf_counter() - t0) / (per * loops)


# --- stages ----------------------------------------------------------------

def noop_pipeline(name, repository, kind, n, checkout):
    """checkout: the local repository's URL for stages that check it out,
    or None for `checkout: false` stages."""
    stage = {"kind": kind, "run": ["/bin/true"]}
    if not checkout:
        stage["checkout"] = False
    return harness.pipeline(name, repository, branches=["main"], checkout=checkout,
                            stages={"s%02d" % i: dict(stage) for i in range(n)})


def pipelines(repo):
    p = {}
    for c, kind in CONCURRENCY_KIND.items():
        p["noop-c%d.yaml" % c] = noop_pipeline("noop-c%d" % c, "sluice-bench/noop-c%d" % c,
                                               kind, STAGES, checkout=None)
    p["multi-c4.yaml"] = noop_pipeline("multi-c4", "sluice-bench/multi-c4", CONCURRENCY_KIND[4],
                                       STAGES // MULTI_RUNS, checkout=None)
    p["checkout-c4.yaml"] = noop_pipeline("checkout-c4", "sluice-bench/checkout-c4",
                                          CONCURRENCY_KIND[4], CHECKOUT_STAGES, checkout=repo.url)
    p["sleep-c4.yaml"] = harness.pipeline(
        "sleep-c4", "sluice-bench/sleep-c4", branches=["main"], stages={
            "s%d" % i: {"kind": CONCURRENCY_KIND[4], "run": ["sleep", str(SLEEP_S)],
                        "checkout": False} for i in range(SLEEP_STAGES)})
    return p


def stage_throughput(stack, procs, body, runs):
    """Posts `runs` runs at once and waits for them; stages per second from
    the first stage start to the last stage finish, with the CPU each
    process used meanwhile per stage."""
    cpu0 = {n: cpu_seconds(p.popen.pid) for n, p in procs.items()}
    ids = [push(stack, body)[0] for _ in range(runs)]
    # The figures come from the stages' own times, not from when the end is
    # seen: polled seldom, as the view of a run of 100 stages is work for
    # the agent, which would otherwise be measured with the stages.
    done = wait_finished(stack, ids, 120, poll=0.25)
    cpu = {n: cpu_seconds(p.popen.pid) - cpu0[n] for n, p in procs.items()}
    stages = [(api_ms(s["started"]), api_ms(s["finished"]))
              for run in done.values() for s in run["stages"].values()]
    stages.sort()
    span = (max(f for _, f in stages) - stages[0][0]) / 1e3
    n = len(stages)
    # Claim → finish of each stage, and a stage's finish → the next claim
    # (in claim order): at concurrency 1 these two add up to the whole.
    busy = [(f - s) / 1e3 for s, f in stages]
    gaps = [(stages[i + 1][0] - stages[i][1]) / 1e3 for i in range(n - 1)]
    # Claim to claim: long ones are time when the worker took nothing.
    claims = [(stages[i + 1][0] - stages[i][0]) / 1e3 for i in range(n - 1)]
    stalls = [c for c in claims if c >= STALL_S]
    return {"n": n, "span": span, "rate": n / span, "busy_p50": percentile(busy, 50),
            "gap_p50": percentile(gaps, 50), "stalls": len(stalls), "stalled": sum(stalls),
            "cpu": {k: v / n for k, v in cpu.items()}}


def warm(stack, body):
    ids = [push(stack, body)[0]]
    wait_finished(stack, ids, 60)


def sample_rss_while_running(stack, worker, body, n):
    """Posts a run of n sleeping stages; VmRSS of the worker (KiB), sampled
    every 50 ms while all n stage processes run: (the sample of the highest
    VmRSS, number of samples)."""
    rid = push(stack, body)[0]
    harness.wait_for("%d stages running" % n, lambda: sum(
        1 for s in stack.run(rid)["stages"].values() if s["status"] == "running") == n,
        20, [worker])
    samples = []
    while True:
        mem = memory_kib(worker.popen.pid)
        stages = stack.run(rid)["stages"].values()
        if sum(1 for s in stages if s["status"] == "running") < n:
            break
        samples.append(mem)
        time.sleep(0.05)
    wait_finished(stack, [rid], 30)
    if not samples:
        raise BenchError("no VmRSS sample taken while the %d stages ran" % n)
    return max(samples, key=lambda m: m["VmRSS"]), len(samples)


def bench(root):
    info = machine()
    print_machine(info)

    floor = {}
    for loops in (1, 2, 4):
        floor[loops] = spawn_floor(loops, FLOOR_SPAWNS)
        print("floor: posix_spawn + waitpid of /bin/true, %d loop(s): %s per spawn"
              % (loops, us(floor[loops])), flush=True)

    repo = harness.LocalRepo(os.path.join(root, "repo"))
    stack = harness.Stack(root, repo, pipelines(repo), workers=(), log_level="info",
                          extra_settings=benchlib.stack_settings())

    def body():
        workers = {c: stack.start_worker(kind, c, "worker-c%d" % c)
                   for c, kind in CONCURRENCY_KIND.items()}
        w4 = workers[4]
        bodies = {name: push_body(stack, "sluice-bench/" + name)
                  for name in ("noop-c1", "noop-c2", "noop-c4", "multi-c4", "checkout-c4",
                               "sleep-c4")}
        # The first runs pay for the consumer group forming (and the mirror
        # clone, for the checkout pipeline).
        for c in CONCURRENCY_KIND:
            warm(stack, bodies["noop-c%d" % c])
        warm(stack, bodies["checkout-c4"])
        time.sleep(IDLE_S)
        rss_idle = memory_kib(w4.popen.pid)
        print("worker (concurrency 4) VmRSS idle after the warm-up runs: %s"
              % rss_text(rss_idle), flush=True)

        out = {}
        for c in CONCURRENCY_KIND:
            procs = {"worker and its stages": workers[c], "agent": stack.agent,
                     "redis": stack.redis, "devbroker": stack.broker}
            r = out[c] = stage_throughput(stack, procs, bodies["noop-c%d" % c], 1)
            print("concurrency %d: %d stages in %.3f s = %.0f stages/s; %s per stage "
                  "(floor %s); claim → finish p50 %s, finish → next claim p50 %s; %d stalls "
                  "(%.2f s)" % (c, r["n"], r["span"], r["rate"], us(1 / r["rate"]),
                                us(floor[c]), ms(r["busy_p50"]), ms(r["gap_p50"]), r["stalls"],
                                r["stalled"]), flush=True)
        procs = {"worker and its stages": w4}
        for name, runs in (("multi", MULTI_RUNS), ("checkout", 1)):
            r = out[name] = stage_throughput(stack, procs, bodies[name + "-c4"], runs)
            print("%s, concurrency 4: %d stages in %.3f s = %.0f stages/s; %d stalls (%.2f s)"
                  % (name, r["n"], r["span"], r["rate"], r["stalls"], r["stalled"]),
                  flush=True)

        time.sleep(IDLE_S)
        rss_after = memory_kib(w4.popen.pid)
        rss_busy, samples = sample_rss_while_running(stack, w4, bodies["sleep-c4"],
                                                     SLEEP_STAGES)
        hwm = memory_kib(w4.popen.pid)["VmHWM"]
        print("worker (concurrency 4) VmRSS: idle %s, after the runs %s, with %d stages "
              "running %s (max of %d samples), VmHWM %s"
              % (rss_text(rss_idle), rss_text(rss_after), SLEEP_STAGES, rss_text(rss_busy),
                 samples, mib(hwm)), flush=True)
        return out, {"idle": rss_idle, "after": rss_after, "busy": rss_busy,
                     "samples": samples, "hwm": hwm}

    out, rss = benchlib.run_stack(stack, body)
    return report(info, floor, out, rss)


def rss_text(m):
    return "%s (RssAnon %s, RssFile %s)" % (mib(m["VmRSS"]), mib(m["RssAnon"]), mib(m["RssFile"]))


def stalls(r):
    if not r["stalls"]:
        return "none"
    return "%d, %.2f s in all (without them: %.0f stages/s)" % (
        r["stalls"], r["stalled"], r["n"] / (r["span"] - r["stalled"]))


def report(info, floor, out, rss):
    rows = [("fork+exec+wait floor: posix_spawn + waitpid of /bin/true, wall time per spawn "
             "with 1 / 2 / 4 loops side by side",
             " / ".join(us(floor[c]) for c in (1, 2, 4)), "", "")]
    for c in CONCURRENCY_KIND:
        r = out[c]
        over = 1 / r["rate"] - floor[c]
        target = c == 4
        rows.append((
            "no-op stages per second, `checkout: false`, one worker at concurrency %d" % c,
            "%.0f/s (%s per stage; overhead %s − %s = **%s**)"
            % (r["rate"], us(1 / r["rate"]), us(1 / r["rate"]), us(floor[c]), us(over)),
            "overhead < %.0f ms" % TARGET_OVERHEAD_MS if target else "",
            verdict(over * 1e3 < TARGET_OVERHEAD_MS) if target else ""))
        rows.append(("  stage claimed → finished, p50; a stage's finish → the next claim, p50; "
                     "stalls (≥ %.0f ms between two claims)" % (STALL_S * 1e3),
                     "%s; %s; %s" % (ms(r["busy_p50"]), ms(r["gap_p50"]), stalls(r)), "", ""))
        rows.append(("  CPU per stage", ", ".join(
            "%s %s" % (k, us(v)) for k, v in r["cpu"].items()), "", ""))
    r = out["multi"]
    rows.append(("the same %d stages in %d runs posted at once (several partitions), "
                 "concurrency 4 (for information)" % (r["n"], MULTI_RUNS),
                 "%.0f/s (%s per stage; %s above the floor); stalls: %s"
                 % (r["rate"], us(1 / r["rate"]), us(1 / r["rate"] - floor[4]), stalls(r)),
                 "", ""))
    r = out["checkout"]
    rows.append(("no-op stages per second **with checkout**, concurrency 4 (for information)",
                 "%.0f/s (%s per stage; %s above the floor); claimed → finished p50 %s; "
                 "worker CPU per stage %s; stalls: %s"
                 % (r["rate"], us(1 / r["rate"]), us(1 / r["rate"] - floor[4]),
                    ms(r["busy_p50"]), us(r["cpu"]["worker and its stages"]), stalls(r)),
                 "", ""))
    idle = max(rss["idle"]["VmRSS"], rss["after"]["VmRSS"])
    rows.append(("worker VmRSS idle: after its warm-up runs / after the runs above",
                 "%s / %s" % (rss_text(rss["idle"]), rss_text(rss["after"])),
                 "< %.0f MiB" % TARGET_IDLE_RSS_MIB,
                 verdict(idle / 1024.0 < TARGET_IDLE_RSS_MIB)))
    rows.append(("worker VmRSS with %d `sleep %d` stages running (highest of %d samples); "
                 "VmHWM" % (SLEEP_STAGES, SLEEP_S, rss["samples"]),
                 "%s; %s" % (rss_text(rss["busy"]), mib(rss["hwm"])), "", ""))
    lines = ["## Stages (bench/stages.py)", "", machine_line(info), ""]
    lines += table(("figure", "sluice", "target", ""), rows)
    lines += [
        "",
        "How each figure is taken:",
        "",
        "- floor: %d spawns of /bin/true with os.posix_spawn (glibc: clone(CLONE_VM|"
        "CLONE_VFORK) + execve, empty environment) and os.waitpid, in 1, 2 or 4 processes side "
        "by side; wall time of all of them divided by the spawns: the least a runner can "
        "spend per process on this machine, taken in the same run as the figures beside it."
        % FLOOR_SPAWNS,
        "- throughput: three sluice-workers run, `--concurrency 1` (kind %s), 2 (kind %s) and "
        "4 (kind %s); each of their pipelines has %d stages of their kind without needs, "
        "`run: [/bin/true]`, `checkout: false` (an empty directory, no git); one run of it is "
        "posted (its jobs all go to one Kafka partition), so the worker has a backlog from "
        "the start; for information, the same number of stages in %d runs posted at once. "
        "Throughput = stages / (last stage `finished` − first stage `started`), the API's "
        "times (ms; `started` is the claim). Per-stage overhead = 1/throughput − the floor "
        "with as many loops as the concurrency: the wall time the runner adds per stage "
        "beyond the bare spawn at the same parallelism. CPU per stage: user + system time of "
        "each process over the run (the worker's includes its stage processes) / stages; it "
        "includes what each process spends idle meanwhile, so stalls inflate it."
        % (CONCURRENCY_KIND[1], CONCURRENCY_KIND[2], CONCURRENCY_KIND[4], STAGES, MULTI_RUNS),
        "- with checkout: one run of %d such stages through the concurrency-4 worker without "
        "`checkout: false`: each stage gets a checkout of the commit from the worker's mirror "
        "(cloned during the warm-up)." % CHECKOUT_STAGES,
        "- stalls: two claims in a row more than %.0f ms apart (claims are otherwise a few ms "
        "apart); \"without them\" divides the stages by the time left once those intervals "
        "are taken out, an estimate of the runner without the stalls, not a measurement."
        % (STALL_S * 1e3),
        "- memory: VmRSS (= RssAnon, the process's own memory, + RssFile, pages of the "
        "binary and shared libraries it has touched, shared with every other process using "
        "them) and VmHWM from /proc/<pid>/status of the concurrency-4 worker (the "
        "worker alone, not its stage processes): idle %.1f s after its warm-up runs and after "
        "the runs above, then every 50 ms while a run's %d `sleep %d` stages (`checkout: "
        "false`) all show `running`. The worker gives back what its stages freed once it "
        "has had none for a second (malloc_trim)." % (IDLE_S, SLEEP_STAGES, SLEEP_S),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(benchlib.main(__doc__, bench))
