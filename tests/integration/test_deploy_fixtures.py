"""The example deployment's demo service (config/examples/mint-replica/app/
server.py) and the deployment fixtures other tests build on
(tests/deploy_fixtures.py): what each serves, HAProxy's traffic split as
its runtime API sets it, Prometheus reloading its targets, and a registry
that accepts deletes."""

import hashlib
import http.client
import os
import shutil
import subprocess
import sys

import pytest

from conftest import free_port
from deploy_fixtures import SERVER_PY, DemoService, HAProxy, Prometheus, Registry, get


def metrics(url):
    """{(name, frozenset of labels): value} of url's /metrics."""
    out = {}
    for line in get(url + "/metrics")[2].splitlines():
        if line.startswith("#"):
            continue
        name_labels, value = line.rsplit(" ", 1)
        name, _, labels = name_labels.partition("{")
        pairs = [p.split("=", 1) for p in labels.rstrip("}").split(",") if p]
        out[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


def requests_total(url, code, track, version):
    key = ("demo_requests_total",
           frozenset({("code", code), ("track", track), ("version", version)}))
    return metrics(url).get(key)


# --- the demo service --------------------------------------------------------

def test_the_demo_service_answers_with_its_version_and_counts_by_code(tmp_path):
    with DemoService(str(tmp_path), "v7", "blue") as d:
        status, headers, body = get(d.url + "/")
        assert (status, body) == (200, "hello from v7\n")
        assert headers["x-demo-version"] == "v7" and headers["x-demo-track"] == "blue"
        assert get(d.url + "/healthz")[::2] == (200, "ok")
        assert get(d.url + "/version")[::2] == (200, "v7")
        assert get(d.url + "/nothing-here")[0] == 404
        get(d.url + "/")
        assert requests_total(d.url, "200", "blue", "v7") == 2
        assert requests_total(d.url, "500", "blue", "v7") == 0
        build = ("demo_build_info", frozenset({("track", "blue"), ("version", "v7")}))
        assert metrics(d.url)[build] == 1


def test_the_metrics_pass_promtool(tmp_path):
    with DemoService(str(tmp_path), "v1", fail_rate=0.5) as d:
        for _ in range(3):
            get(d.url + "/")
        text = get(d.url + "/metrics")[2]
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_fail_rate_file_beside_the_server_fails_that_share_evenly(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(SERVER_PY, app / "server.py")
    (app / "fail-rate").write_text("0.25\n")
    with DemoService(str(tmp_path), "v3", "canary", script=str(app / "server.py")) as d:
        assert [get(d.url + "/")[0] for _ in range(8)] == [200, 200, 200, 500] * 2
        status, headers, body = get(d.url + "/")
        assert (status, body) == (200, "hello from v3\n")
        assert requests_total(d.url, "500", "canary", "v3") == 2
        assert requests_total(d.url, "200", "canary", "v3") == 7
        assert d.stop() == 0  # SIGTERM ends it cleanly
    # $DEMO_FAIL_RATE wins over the file.
    with DemoService(str(tmp_path), "v3", "canary", fail_rate=0.0,
                     script=str(app / "server.py")) as d:
        assert [get(d.url + "/")[0] for _ in range(8)] == [200] * 8
    with DemoService(str(tmp_path), "v3", "canary", fail_rate=1,
                     script=str(app / "server.py")) as d:
        assert get(d.url + "/")[::2] == (500, "error from v3\n")


@pytest.mark.parametrize("rate", ["1.5", "half", "-0.1"])
def test_a_bad_fail_rate_is_refused(rate):
    env = dict(os.environ, DEMO_FAIL_RATE=rate)
    out = subprocess.run([sys.executable, SERVER_PY, "--listen", "127.0.0.1:%d" % free_port(),
                          "--version", "v1"], env=env, capture_output=True, text=True, timeout=10)
    assert out.returncode == 2
    assert out.stderr == ("server.py: DEMO_FAIL_RATE: expected a number from 0 to 1, got %r\n"
                          % rate)


# --- HAProxy -----------------------------------------------------------------

@pytest.fixture(scope="module")
def slots(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("slots"))
    services = {}
    try:
        for name, version in (("app-stable", "v1"), ("app-canary", "v2"), ("app-blue", "v1"),
                              ("app-green", "v2")):
            services[name] = DemoService(root, version, name[len("app-"):])
        yield root, services
    finally:
        for s in services.values():
            s.stop()


def test_haproxy_starts_with_the_weights_and_states_asked_for(slots):
    root, services = slots
    ports = {name: s.port for name, s in services.items()}
    with HAProxy(os.path.join(root, "h1"), ports, init_weights={"app-canary": 0},
                 init_states={"app-blue": "maint", "app-green": "drain"}) as h:
        assert h.weights() == {"app-stable": 100, "app-canary": 0, "app-blue": 100,
                               "app-green": 100}
        assert h.states() == {"app-stable": "ready", "app-canary": "ready",
                              "app-blue": "maint", "app-green": "drain"}
        assert h.traffic(10) == {"app-stable": 10}
        proc = h.proc
    assert not proc.alive()
    with pytest.raises(OSError):
        h.command("show info")


def test_haproxy_splits_traffic_by_the_weights_its_runtime_api_sets(slots):
    root, services = slots
    ports = {name: services[name].port for name in ("app-stable", "app-canary")}
    with HAProxy(os.path.join(root, "h2"), ports, init_weights={"app-canary": 0}) as h:
        h.command("set server app/app-stable weight 80")
        h.command("set server app/app-canary weight 20")
        assert h.weights() == {"app-stable": 80, "app-canary": 20}
        # Weighted round robin: exact over a full cycle, give or take the
        # request in flight when the weights changed.
        split = h.traffic(100)
        assert set(split) == {"app-stable", "app-canary"}
        assert abs(split["app-canary"] - 20) <= 1, split
        split = h.traffic(100, by="version")
        assert set(split) == {"v1", "v2"}
        assert abs(split["v2"] - 20) <= 1, split
        h.command("set server app/app-stable state maint")
        assert h.states()["app-stable"] == "maint"
        assert h.traffic(5) == {"app-canary": 5}
        h.command("set server app/app-canary state maint")
        assert h.traffic(3) == {None: 3}  # HAProxy's own 503


def test_haproxy_refuses_unknown_servers_and_states(slots):
    root, services = slots
    with pytest.raises(ValueError, match="not among the servers: app-red"):
        HAProxy(root, {"app-stable": 1}, init_weights={"app-red": 0})
    with pytest.raises(ValueError, match="state 'down' is not one of"):
        HAProxy(root, {"app-stable": 1}, init_states={"app-stable": "down"})


# --- Prometheus and the registry ----------------------------------------------

def test_prometheus_scrapes_the_targets_it_is_given(slots):
    root, services = slots
    stable, canary = services["app-stable"], services["app-canary"]
    with Prometheus(os.path.join(root, "prom"), [stable.address]) as p:
        got = p.wait_for_series('demo_build_info{track="stable"}')
        assert got[0]["metric"]["version"] == "v1"
        assert p.query('demo_build_info{track="canary"}') == []
        p.set_targets([stable.address, canary.address])
        got = p.wait_for_series('demo_build_info{track="canary"}')
        assert got[0]["metric"]["instance"] == canary.address
        proc = p.proc
    assert not proc.alive()


def test_the_registry_serves_the_v2_api_and_accepts_deletes(tmp_path):
    blob = b"a layer of the test"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    with Registry(str(tmp_path)) as r:
        status, headers, _ = get(r.url + "/v2/")
        assert status == 200
        assert headers["docker-distribution-api-version"] == "registry/2.0"
        conn = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        try:
            conn.request("POST", "/v2/demo/app/blobs/uploads/")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 202
            location = resp.getheader("Location")
            sep = "&" if "?" in location else "?"
            conn.request("PUT", location + sep + "digest=" + digest, body=blob,
                         headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 201
            conn.request("DELETE", "/v2/demo/app/blobs/" + digest)
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 202
        finally:
            conn.close()
        assert get(r.url + "/v2/demo/app/blobs/" + digest)[0] == 404
