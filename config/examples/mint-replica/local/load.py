#!/usr/bin/env python3
"""Steady traffic for the example's environments, and what answered it.

    load.py OUT_DIR NAME=URL... [--rate N]

Sends N requests a second (default 10) to each URL (an environment's
load balancer), so that Prometheus sees the error rate the analyses judge.
Every second it rewrites OUT_DIR/NAME.json with the answers of the last
10 seconds: {"window_s": 10, "requests": n, "by_version": {"v1": n, ...},
"by_code": {"200": n, ...}} (the version from the X-Demo-Version header,
"-" when there was no answer). SIGTERM or SIGINT ends it.
"""

import argparse
import collections
import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse

WINDOW_S = 10


class Target:
    def __init__(self, name, url):
        self.name = name
        self.url = urllib.parse.urlsplit(url)
        self.answers = collections.deque()  # (monotonic time, version, code)
        self.lock = threading.Lock()

    def request(self):
        version, code = "-", "error"
        try:
            conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=2)
            conn.request("GET", self.url.path or "/")
            resp = conn.getresponse()
            resp.read()
            version = resp.getheader("X-Demo-Version", "-")
            code = str(resp.status)
            conn.close()
        except OSError:
            pass
        with self.lock:
            self.answers.append((time.monotonic(), version, code))

    def summary(self):
        cutoff = time.monotonic() - WINDOW_S
        with self.lock:
            while self.answers and self.answers[0][0] < cutoff:
                self.answers.popleft()
            seen = list(self.answers)
        return {"window_s": WINDOW_S, "requests": len(seen),
                "by_version": dict(collections.Counter(v for _, v, _ in seen)),
                "by_code": dict(collections.Counter(c for _, _, c in seen))}


def write(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("targets", nargs="+", metavar="NAME=URL")
    ap.add_argument("--rate", type=float, default=10.0)
    args = ap.parse_args()
    targets = []
    for t in args.targets:
        name, sep, url = t.partition("=")
        if not sep or not url.startswith("http://"):
            ap.error("%r: expected NAME=http://HOST:PORT/PATH" % t)
        targets.append(Target(name, url))
    os.makedirs(args.out_dir, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def send(target):
        period = 1.0 / args.rate
        next_at = time.monotonic()
        while not stop.is_set():
            target.request()
            next_at += period
            stop.wait(max(0.0, next_at - time.monotonic()))

    threads = [threading.Thread(target=send, args=(t,), daemon=True) for t in targets]
    for th in threads:
        th.start()
    while not stop.wait(1.0):
        for t in targets:
            write(os.path.join(args.out_dir, t.name + ".json"), t.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
