"""make bench: whole pipelines, webhook to finished.

Phases, on one stack over loopback with one sluice-worker per stage kind:
1. one at a time: RUNS five-stage pipelines (a chain build → test → scan →
   push → deploy, each stage its own kind, `run: [/bin/true]`, `checkout:
   false`), each posted once the previous one has finished; webhook → run
   finished, p50/p99, and where the time goes, from the stage hashes'
   queued/claimed/finished times; then CHECKOUT_RUNS of the same chain with
   the usual checkout, for information;
2. at once: BURST runs of the chain posted together; runs finished per
   second and stage results routed per second over the burst;
3. the router alone: BACKLOG runs of a two-stage pipeline whose first stages
   all finish while the agent is stopped (SIGSTOP), so their results wait in
   Kafka; after SIGCONT, results routed per second (each routing queues the
   run's second stage, and records when).

Writes the "Pipelines" section of bench/results.md (benchlib.main).
"""

import concurrent.futures
import os
import signal
import sys
import time

import benchlib
from benchlib import (BenchError, KEY_PREFIX, machine, machine_line, ms, p50_p99,
                      pair, print_machine, push, push_body, redis_cli, stage_times, table,
                      verdict, wait_finished)

import harness  # noqa: E402 (benchlib puts tests/ on the path)

CHAIN = ("build", "test", "scan", "push", "deploy")
RUNS, CHECKOUT_RUNS = 200, 10
# Warm-up runs: the consumer groups form; every process's producer meets the
# topics it will publish to (any process's outbox dispatcher may publish any
# recorded job or result, and a producer's first message to a topic waits for
# that topic's metadata).
WARMUP = 20
# The agent stays stopped for seconds in the router phase: a session timeout
# that long keeps its consumers in their groups meanwhile.
SESSION_TIMEOUT_S = 60
SESSION_TIMEOUT = "%ds" % SESSION_TIMEOUT_S
BURST, BURST_THREADS = 100, 8
BACKLOG = 100
WORKER_CONCURRENCY = 4
# The two stages of the router pipeline: the first one's worker is held while
# the runs are created, so that all of them queue before any result comes.
ROUTER_FIRST, ROUTER_SECOND = "push", "deploy"

TARGET_P50_MS = 50.0


def chain(name, repository, checkout):
    """checkout: the local repository's URL for stages that check it out,
    or None for `checkout: false` stages."""
    stages = {}
    for i, kind in enumerate(CHAIN):
        s = {"kind": kind, "run": ["/bin/true"]}
        if i:
            s["needs"] = [CHAIN[i - 1]]
        if not checkout:
            s["checkout"] = False
        stages[kind] = s
    return harness.pipeline(name, repository, branches=["main"], stages=stages,
                            checkout=checkout)


def pipelines(repo):
    return {
        "chain.yaml": chain("chain", "sluice-bench/chain", checkout=None),
        "chain-checkout.yaml": chain("chain-checkout", "sluice-bench/chain-checkout",
                                     checkout=repo.url),
        "router.yaml": harness.pipeline("router", "sluice-bench/router", branches=["main"],
                                        stages={
            "first": {"kind": ROUTER_FIRST, "run": ["/bin/true"], "checkout": False},
            "second": {"kind": ROUTER_SECOND, "run": ["/bin/true"], "checkout": False,
                       "needs": ["first"]}}),
    }


def run_times(port, run_ids):
    lines = redis_cli(port, *[["HGET", "%srun:%s" % (KEY_PREFIX, r), "finished"]
                              for r in run_ids])
    return {r: int(v) for r, v in zip(run_ids, lines)}


def one_at_a_time(stack, body, n):
    """n runs, each posted once the previous one has finished; per run the
    webhook → finished time and its parts (seconds)."""
    sent = []
    for _ in range(n):
        rid, at, answered = push(stack, body)
        wait_finished(stack, [rid], 30, poll=0.005)
        sent.append((rid, at, answered))
    ids = [s[0] for s in sent]
    finished = run_times(stack.redis_port, ids)
    st = stage_times(stack.redis_port, ids, CHAIN)
    parts = {k: [] for k in ("total", "intake", "queue", "stages", "router", "jobs")}
    for rid, at, answered in sent:
        t = [st[(rid, s)] for s in CHAIN]
        parts["total"].append((finished[rid] * 1e6 - at) / 1e9)
        parts["intake"].append((answered - at) / 1e9)
        parts["queue"].append((t[0]["started"] * 1e6 - answered) / 1e9)
        parts["stages"].append(sum(x["finished"] - x["started"] for x in t) / 1e3)
        # A result's way to the router and the next stage queued; the run's
        # end is the routing of the last result.
        hops = [t[i + 1]["queued_at"] - t[i]["finished"] for i in range(len(t) - 1)]
        hops.append(finished[rid] - t[-1]["finished"])
        parts["router"].append(sum(hops) / 1e3)
        parts["jobs"].append(sum(x["started"] - x["queued_at"] for x in t[1:]) / 1e3)
    return {k: p50_p99(v) for k, v in parts.items()}


def burst(stack, body, n):
    """n runs posted at once from BURST_THREADS threads; (runs finished per
    second, results routed per second, wall seconds)."""
    with concurrent.futures.ThreadPoolExecutor(BURST_THREADS) as pool:
        sent = list(pool.map(lambda _: push(stack, body), range(n)))
    ids = [s[0] for s in sent]
    wait_finished(stack, ids, 120, poll=0.2)
    first_sent = min(s[1] for s in sent) / 1e6
    finished = run_times(stack.redis_port, ids)
    st = stage_times(stack.redis_port, ids, CHAIN, fields=("finished",))
    wall = (max(finished.values()) - first_sent) / 1e3
    first_result = min(v["finished"] for v in st.values())
    routing = (max(finished.values()) - first_result) / 1e3
    return {"wall": wall, "runs_per_s": n / wall, "results": len(st),
            "results_per_s": len(st) / routing, "routing": routing}


def wait_outbox_empty(port, timeout):
    deadline = time.monotonic() + timeout
    while int(redis_cli(port, ["XLEN", KEY_PREFIX + "outbox"])[0] or 0):
        if time.monotonic() > deadline:
            raise BenchError("the outbox is not empty after %ds" % timeout)
        time.sleep(0.01)


def router_backlog(stack, first_worker, body, n):
    """Results routed per second once n results wait in Kafka for a stopped
    agent. Processes stopped here are continued whatever happens."""
    port = stack.redis_port
    stopped = []

    def stop(p):
        os.kill(p.popen.pid, signal.SIGSTOP)
        stopped.append(p)

    def cont(p):
        os.kill(p.popen.pid, signal.SIGCONT)
        stopped.remove(p)

    try:
        stop(first_worker)
        ids = [push(stack, body)[0] for _ in range(n)]
        wait_outbox_empty(port, 30)  # every first job is in Kafka
        stop(stack.agent)
        held_since = time.monotonic()
        cont(first_worker)
        deadline = time.monotonic() + 60
        while True:
            st = stage_times(port, ids, ("first",), fields=("finished",))
            if all(v["finished"] for v in st.values()):
                break
            if time.monotonic() > deadline:
                raise BenchError("the first stages did not finish with the agent stopped")
            time.sleep(0.05)
        wait_outbox_empty(port, 30)  # every result is in Kafka
        t0 = time.time_ns() / 1e6
        held = time.monotonic() - held_since
        cont(stack.agent)
        deadline = time.monotonic() + 60
        while True:
            st = stage_times(port, ids, ("second",), fields=("queued_at",))
            if all(v["queued_at"] for v in st.values()):
                break
            if time.monotonic() > deadline:
                raise BenchError("the router did not route %d results in 60 s" % n)
            time.sleep(0.02)
    finally:
        for p in list(stopped):
            cont(p)
    span = (max(v["queued_at"] for v in st.values()) - t0) / 1e3
    wait_finished(stack, ids, 60, poll=0.1)
    return {"span": span, "rate": n / span, "held": held}


def bench(root):
    info = machine()
    print_machine(info)
    repo = harness.LocalRepo(os.path.join(root, "repo"))
    stack = harness.Stack(root, repo, pipelines(repo), workers=(), log_level="info",
                          extra_settings=benchlib.stack_settings(
                              {"kafka": {"session_timeout": SESSION_TIMEOUT}}))

    def body():
        workers = {k: stack.start_worker(k, WORKER_CONCURRENCY, "worker-" + k) for k in CHAIN}
        bodies = {name: push_body(stack, "sluice-bench/" + name)
                  for name in ("chain", "chain-checkout", "router")}
        # The first runs pay for the consumer groups forming and the mirror clone.
        # The five workers join one group with different topics, and some of
        # them join again as soon as it has formed (librdkafka 2.0.2); a join
        # to a group that is up keeps the devbroker's mock group rebalancing
        # for the session timeout less a second before it hands out
        # partitions again; seen twice in a row (117 s with a 60 s session).
        wait_finished(stack, [push(stack, bodies["chain-checkout"])[0]],
                      60 + 2 * SESSION_TIMEOUT_S)
        for _ in range(WARMUP):
            wait_finished(stack, [push(stack, bodies["chain"])[0]], 60)
        wait_finished(stack, [push(stack, bodies["router"])[0]], 60)
        time.sleep(0.5)

        out = {"seq": one_at_a_time(stack, bodies["chain"], RUNS)}
        print("chain of %d no-op stages, %d runs one at a time: webhook → finished p50 %s, "
              "p99 %s" % (len(CHAIN), RUNS, ms(out["seq"]["total"][0]),
                          ms(out["seq"]["total"][1])), flush=True)
        out["checkout"] = one_at_a_time(stack, bodies["chain-checkout"], CHECKOUT_RUNS)
        print("with checkout, %d runs: p50 %s" % (
            CHECKOUT_RUNS, ms(out["checkout"]["total"][0])), flush=True)
        time.sleep(0.5)
        out["burst"] = burst(stack, bodies["chain"], BURST)
        b = out["burst"]
        print("%d runs at once: all finished %.2f s after the first POST = %.1f runs/s; %d "
              "results routed in %.2f s = %.0f/s" % (BURST, b["wall"], b["runs_per_s"],
                                                    b["results"], b["routing"],
                                                    b["results_per_s"]), flush=True)
        time.sleep(0.5)
        out["router"] = router_backlog(stack, workers[ROUTER_FIRST], bodies["router"], BACKLOG)
        print("router backlog of %d results routed in %.3f s = %.0f/s" % (
            BACKLOG, out["router"]["span"], out["router"]["rate"]), flush=True)
        return out

    return report(info, benchlib.run_stack(stack, body))


def report(info, out):
    seq, co, b, r = out["seq"], out["checkout"], out["burst"], out["router"]
    p50 = seq["total"][0]
    arrow = " → ".join(CHAIN)

    def parts(x):
        return [
            ("  POST sent → 202 answered", pair(x["intake"]), "", ""),
            ("  202 → first stage claimed", pair(x["queue"]), "", ""),
            ("  the 5 stages, claimed → finished (sum)", pair(x["stages"]), "", ""),
            ("  the 5 results, stage finished → next stage queued / run finished (sum)",
             pair(x["router"]), "", ""),
            ("  the 4 later jobs, queued → claimed (sum)", pair(x["jobs"]), "", ""),
        ]

    rows = [("webhook → run finished, p50 / p99, %d runs one at a time, `checkout: false`"
             % RUNS, pair(seq["total"]), "p50 < %.0f ms" % TARGET_P50_MS,
             verdict(p50 * 1e3 < TARGET_P50_MS))]
    rows += parts(seq)
    rows.append(("webhook → run finished, p50 / p99, %d runs one at a time, **with checkout** "
                 "(for information)" % CHECKOUT_RUNS, pair(co["total"]), "", ""))
    rows += parts(co)
    rows += [
        ("%d runs posted at once: runs finished per second" % BURST,
         "%.1f/s (all %d finished %.2f s after the first POST)" % (b["runs_per_s"], BURST,
                                                                   b["wall"]), "", ""),
        ("  stage results routed per second over that burst",
         "%.0f/s (%d results in %.2f s)" % (b["results_per_s"], b["results"], b["routing"]),
         "", ""),
        ("router alone: a backlog of %d results routed per second" % BACKLOG,
         "%.0f/s (%.3f s)" % (r["rate"], r["span"]), "", ""),
    ]
    lines = ["## Pipelines (bench/pipelines.py)", "", machine_line(info), ""]
    lines += table(("figure", "sluice", "target", ""), rows)
    lines += [
        "",
        "How each figure is taken:",
        "",
        "- the pipeline: a chain of five stages %s, each of its own kind, `run: [/bin/true]`, "
        "`checkout: false` (an empty directory, no git), so every step but the first goes "
        "through the router; five sluice-workers, one per kind, `--concurrency %d`. After "
        "%d warm-up runs, %d runs are posted one at a time, each once the API shows the previous "
        "one finished. Webhook → finished: the run's `finished` (set when its last result is "
        "routed; ms) − the time the POST was sent. The parts come from the stage hashes in "
        "Redis: `queued_at` (the job's publication recorded), `started` (claimed by a "
        "worker), `finished`; each part is summed per run, then its p50 / p99 taken, so the "
        "parts need not add up to the total's percentiles."
        % (arrow, WORKER_CONCURRENCY, WARMUP, RUNS),
        "- with checkout: the same chain without `checkout: false` (every stage a checkout "
        "of the commit from the worker's mirror), %d runs one at a time." % CHECKOUT_RUNS,
        "- at once: %d runs of the `checkout: false` chain posted from %d threads; runs per "
        "second = %d / (last run `finished` − first POST sent); results routed per second = "
        "%d stage results / (last run `finished` − first stage `finished`)."
        % (BURST, BURST_THREADS, BURST, BURST * len(CHAIN)),
        "- router alone: a pipeline first (kind %s) → second (kind %s). With the %s worker "
        "stopped (SIGSTOP), %d runs are posted; once the agent's outbox has published every "
        "first job, the agent is stopped and the worker continued; once all %d first stages "
        "have finished and their results are in Kafka, the agent is continued (SIGCONT). "
        "Rate = %d / (last second stage's `queued_at` − SIGCONT): each result consumed from "
        "Kafka, route.lua run, the next job recorded. The agent was stopped %.1f s; the "
        "stack runs with `kafka.session_timeout: %s` so that its consumers stay in their "
        "groups meanwhile."
        % (ROUTER_FIRST, ROUTER_SECOND, ROUTER_FIRST, BACKLOG, BACKLOG, BACKLOG, r["held"],
           SESSION_TIMEOUT),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(benchlib.main(__doc__, bench))
