#!/usr/bin/env python3
"""The example deployment's demo service: one small HTTP server per instance.

    server.py --listen 127.0.0.1:8101 --version v2 [--track canary]

  GET /         200 "hello from <version>", or 500 for a share of requests
  GET /healthz  200 "ok"
  GET /version  the version
  GET /metrics  Prometheus text: demo_requests_total{code,track,version}
                (every request to /, by status) and
                demo_build_info{track,version} 1

The share of requests to / that fail comes from a file `fail-rate` beside
this script (a number from 0 to 1; the example repository's bad commit adds
one) or from $DEMO_FAIL_RATE, which wins. Failures are spread evenly rather
than drawn at random (a rate of 0.5 fails every second request), so that an
error rate measured over any window is the configured one. Every answer
carries X-Demo-Version and X-Demo-Track headers. SIGTERM ends the server
cleanly. Standard library only.
"""

import argparse
import math
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRACKS = ("stable", "canary", "blue", "green")
FAIL_RATE_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fail-rate")


def parse_rate(text, where):
    try:
        rate = float(text.strip())
    except ValueError:
        rate = math.nan
    if not 0.0 <= rate <= 1.0:
        raise ValueError("%s: expected a number from 0 to 1, got %r" % (where, text.strip()))
    return rate


def configured_fail_rate():
    if "DEMO_FAIL_RATE" in os.environ:
        return parse_rate(os.environ["DEMO_FAIL_RATE"], "DEMO_FAIL_RATE")
    try:
        with open(FAIL_RATE_FILE, encoding="utf-8") as f:
            return parse_rate(f.read(), FAIL_RATE_FILE)
    except FileNotFoundError:
        return 0.0


def label_value(s):
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Demo:
    """The instance's identity and its counters, shared by the handler threads."""

    def __init__(self, version, track, fail_rate):
        self.version = version
        self.track = track
        self.fail_rate = fail_rate
        self.lock = threading.Lock()
        self.served = 0
        self.by_code = {200: 0, 500: 0}  # both exported from the start

    def answer_root(self):
        """The status of the next request to /: it fails when the running
        total of failures owed, served * fail_rate, passes a whole number."""
        with self.lock:
            n = self.served
            self.served += 1
            fails = math.floor((n + 1) * self.fail_rate) > math.floor(n * self.fail_rate)
            code = 500 if fails else 200
            self.by_code[code] += 1
            return code

    def metrics(self):
        labels = 'track="%s",version="%s"' % (label_value(self.track), label_value(self.version))
        with self.lock:
            counts = sorted(self.by_code.items())
        lines = [
            "# HELP demo_requests_total Requests to / by HTTP status code.",
            "# TYPE demo_requests_total counter",
        ]
        lines += ['demo_requests_total{code="%d",%s} %d' % (code, labels, n) for code, n in counts]
        lines += [
            "# HELP demo_build_info The version and track this instance serves.",
            "# TYPE demo_build_info gauge",
            "demo_build_info{%s} 1" % labels,
        ]
        return "\n".join(lines) + "\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "demo"
    sys_version = ""

    def do_GET(self):
        demo = self.server.demo
        path = self.path.split("?", 1)[0]
        ctype = "text/plain; charset=utf-8"
        if path == "/":
            code = demo.answer_root()
            body = "%s from %s\n" % ("hello" if code == 200 else "error", demo.version)
        elif path == "/healthz":
            code, body = 200, "ok"
        elif path == "/version":
            code, body = 200, demo.version
        elif path == "/metrics":
            code, body = 200, demo.metrics()
            ctype = "text/plain; version=0.0.4; charset=utf-8"
        else:
            code, body = 404, "not found\n"
        data = body.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Demo-Version", demo.version)
        self.send_header("X-Demo-Track", demo.track)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # no access log: load tests send thousands of requests


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("expected HOST:PORT, got %r" % text)
    return host.strip("[]"), int(port)


def on_sigterm(signum, frame):
    raise SystemExit(0)


def main():
    ap = argparse.ArgumentParser(description="The example deployment's demo HTTP service.")
    ap.add_argument("--listen", required=True, type=parse_listen, metavar="HOST:PORT")
    ap.add_argument("--version", required=True)
    ap.add_argument("--track", choices=TRACKS, default="stable")
    args = ap.parse_args()
    if not args.version.strip():
        ap.error("--version must not be empty")
    try:
        fail_rate = configured_fail_rate()
    except (OSError, ValueError) as e:
        print("server.py: %s" % e, file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server = ThreadingHTTPServer(args.listen, Handler)
    except OSError as e:
        print("server.py: cannot listen on %s:%d: %s" % (args.listen + (e.strerror,)),
              file=sys.stderr)
        return 1
    server.daemon_threads = True
    server.demo = Demo(args.version, args.track, fail_rate)
    host, port = server.server_address[:2]
    print('level=info msg="listening" addr=%s:%d version=%s track=%s fail_rate=%g'
          % (host, port, args.version, args.track, fail_rate), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
