#!/usr/bin/env python3
"""HAProxy's runtime API from the example's scripts and tools/run-local.sh.

    haproxy.py ADDR state BACKEND            one line per server: name,
                                             weight, state (up or down as its
                                             health check says, ",drain"
                                             when draining; maint), address
    haproxy.py ADDR weight BACKEND SERVER=N...
                                             sets the weights, all in one go
    haproxy.py ADDR admin BACKEND SERVER     the server's administrative state:
                                             ready, drain or maint
    haproxy.py ADDR wait-up BACKEND SERVER SECONDS
                                             waits until the health check
                                             sees SERVER up
    haproxy.py ADDR cmd COMMAND              any runtime API command, its
                                             answer printed

ADDR is HOST:PORT or a unix socket path (the stats socket, level admin).
Exit status 0, 1 on failure (the reason on stderr), 2 on bad usage.
"""

import socket
import sys
import time

# srv_admin_state bits (HAProxy's SRV_ADMF_*): any maintenance, any drain.
ADMIN_MAINT = 0x67
ADMIN_DRAIN = 0x18
OP_RUNNING = 2


def command(addr, line):
    """One command per connection, as the non-interactive API expects."""
    if ":" in addr and not addr.startswith("/"):
        host, port = addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=5)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(addr)
    with sock:
        sock.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def servers(addr, backend):
    """{server: {"weight", "state", "addr"}} from `show servers state`."""
    answer = command(addr, "show servers state %s" % backend)
    names, out = None, {}
    for line in answer.splitlines():
        if line.startswith("#"):
            names = line[1:].split()
            continue
        fields = line.split()
        if names is None or len(fields) < len(names):
            continue
        row = dict(zip(names, fields))
        admin_bits = int(row["srv_admin_state"])
        admin = ("maint" if admin_bits & ADMIN_MAINT
                 else "drain" if admin_bits & ADMIN_DRAIN else "ready")
        up = int(row["srv_op_state"]) == OP_RUNNING
        # What `state` prints: up or down as the health check sees it, and
        # the administrative state when it is not ready.
        state = "maint" if admin == "maint" else (
            ("up" if up else "down") + (",drain" if admin == "drain" else ""))
        out[row["srv_name"]] = {"weight": int(row["srv_uweight"]), "admin": admin, "up": up,
                                "state": state,
                                "addr": "%s:%s" % (row["srv_addr"], row["srv_port"])}
    if names is None:
        raise RuntimeError("backend %s: %s" % (backend, answer.strip() or "no answer"))
    return out


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    addr, verb, args = argv[1], argv[2], argv[3:]
    try:
        if verb == "state" and len(args) == 1:
            for name, s in servers(addr, args[0]).items():
                print("%-8s weight %3d  %-10s %s" % (name, s["weight"], s["state"], s["addr"]))
        elif verb == "weight" and len(args) >= 2:
            for pair in args[1:]:
                server, _, weight = pair.partition("=")
                if not weight.isdigit() or int(weight) > 256:
                    print("haproxy.py: %r: expected SERVER=WEIGHT (0 to 256)" % pair,
                          file=sys.stderr)
                    return 2
            for pair in args[1:]:
                server, _, weight = pair.partition("=")
                answer = command(addr, "set server %s/%s weight %s" % (args[0], server, weight))
                if answer.strip():
                    raise RuntimeError("set server %s/%s weight %s: %s"
                                       % (args[0], server, weight, answer.strip()))
        elif verb == "admin" and len(args) == 2:
            state = servers(addr, args[0]).get(args[1])
            if state is None:
                raise RuntimeError("no server %s/%s" % (args[0], args[1]))
            print(state["admin"])
        elif verb == "wait-up" and len(args) == 3:
            backend, server, seconds = args[0], args[1], float(args[2])
            deadline = time.monotonic() + seconds
            while True:
                state = servers(addr, backend).get(server)
                if state is None:
                    raise RuntimeError("no server %s/%s" % (backend, server))
                if state["up"] and state["admin"] != "maint":
                    return 0
                if time.monotonic() >= deadline:
                    raise RuntimeError("%s/%s is %s after %g s"
                                       % (backend, server, state["state"], seconds))
                time.sleep(0.2)
        elif verb == "cmd" and len(args) == 1:
            sys.stdout.write(command(addr, args[0]))
        else:
            print(__doc__.strip(), file=sys.stderr)
            return 2
    except (OSError, RuntimeError, ValueError) as e:
        print("haproxy.py: %s: %s" % (addr, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
