"""The analysis engine (stages/analysis.c, stages/metric.c) judging releases
on real metrics: a real Prometheus scrapes instances of the example
deployment's demo service, the test keeps them under load, and
tests/unit/analysis_run runs one analysis of a pipeline file's form against
Prometheus' query API, directly or through the web provider.

The instances: stable v1 and canary v3 (failing every second request)
behind HAProxy at 80/20, as a canary step leaves them; canary v2 (healthy)
under load of its own; canary v4 that serves nothing, so that its error
rate is 0/0 = NaN; and v9, which never ran, so that the query returns no
series.
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from conftest import binary, free_port
from deploy_fixtures import DemoService, HAProxy, Load, Prometheus

ERROR_RATE = ('sum(rate(demo_requests_total{code=~"5..",track="canary",version="%s"}[5s])) / '
              'sum(rate(demo_requests_total{track="canary",version="%s"}[5s]))')
SUCCESS = "result[0] < 0.05"
FAILURE = "result[0] >= 0.2"


def error_rate(version):
    return ERROR_RATE % (version, version)


@pytest.fixture(scope="module")
def prom():
    root = tempfile.mkdtemp(prefix="sluice-analysis-")
    started = []
    try:
        def start(server):
            started.append(server)
            return server
        stable = start(DemoService(root, "v1", "stable"))
        bad = start(DemoService(root, "v3", "canary", fail_rate=0.5))
        good = start(DemoService(root, "v2", "canary"))
        idle = start(DemoService(root, "v4", "canary"))
        lb = start(HAProxy(root, {"app-stable": stable.port, "app-canary": bad.port},
                           init_weights={"app-stable": 80, "app-canary": 20}))
        p = start(Prometheus(root, [s.address for s in (stable, bad, good, idle)]))
        start(Load(lb.url + "/", interval=0.005))
        start(Load(good.url + "/", interval=0.02))
        # rate() over 5s needs two scrapes of each instance in the window.
        for v in ("v2", "v3"):
            p.wait_for_series('sum(rate(demo_requests_total{version="%s"}[5s])) > 0' % v,
                              timeout=60)
        p.wait_for_series(error_rate("v4"), timeout=60)
        yield p
    finally:
        for server in reversed(started):
            server.stop()
        if not os.environ.get("SLUICE_KEEP_TMP"):
            shutil.rmtree(root, ignore_errors=True)


def write_analysis(directory, analysis, key="analysis"):
    """key: "analysis" (a step's) or "background" (a canary's)."""
    path = os.path.join(directory, "analysis.json")
    with open(path, "w") as f:
        json.dump({key: analysis}, f, indent=2)
    return path


def analyse(directory, analysis, timeout=60):
    """Runs the analysis: (exit status, result JSON, stderr)."""
    out = subprocess.run([binary("tests/analysis_run"), write_analysis(directory, analysis)],
                         capture_output=True, text=True, timeout=timeout)
    result = json.loads(out.stdout) if out.stdout.strip() else None
    return out.returncode, result, out.stderr


def on_prometheus(prom, query, **keys):
    return dict({"provider": {"prometheus": {"address": prom.url, "query": query,
                                             "timeout": "5s"}}}, **keys)


def on_web(prom, query, **keys):
    url = prom.url + "/api/v1/query?" + urllib.parse.urlencode({"query": query})
    return dict({"provider": {"web": {"url": url, "jsonPath": "$.data.result[0].value[1]",
                                      "timeout": "5s"}}}, **keys)


def measurements(result):
    return result["measurements"]


def test_a_healthy_canary_is_successful_with_each_measured_error_rate(prom, tmp_path):
    began = time.time() * 1000
    rc, result, err = analyse(tmp_path, on_prometheus(
        prom, error_rate("v2"), initialDelay="2s", interval="1s", count=3,
        successCondition=SUCCESS, failureCondition=FAILURE))

    assert rc == 0, (result, err)
    assert result["verdict"] == "Successful"
    assert result["message"].startswith("all measurements taken: 3 successful, 0 failed")
    ms = measurements(result)
    assert len(ms) == 3
    assert ms[0]["at"] - began >= 2000  # initialDelay
    for m in ms:
        assert m["values"] == [0.0]
        assert m["verdict"] == "Successful"
        assert m["condition"] == SUCCESS
        assert m["message"] == SUCCESS + " holds for 0"


def test_a_canary_failing_half_its_requests_fails_with_the_measured_rate(prom, tmp_path):
    rc, result, err = analyse(tmp_path, on_prometheus(
        prom, error_rate("v3"), initialDelay="2s", interval="1s", count=3,
        successCondition=SUCCESS, failureCondition=FAILURE))

    assert rc == 1, (result, err)
    assert result["verdict"] == "Failed"
    ms = measurements(result)
    assert len(ms) == 1  # failureLimit 0: the first failure decides
    value = ms[0]["values"][0]
    assert 0.4 <= value <= 0.6, value
    assert ms[0]["condition"] == FAILURE
    assert ms[0]["message"] == "%s holds for %g" % (FAILURE, value)
    assert result["message"] == ("1 of 1 measurements failed (failureLimit 0): %s holds for %g"
                                 % (FAILURE, value))


def test_within_the_failure_limit_a_failing_canary_passes(prom, tmp_path):
    rc, result, err = analyse(tmp_path, on_prometheus(
        prom, error_rate("v3"), interval="1s", count=2, failureLimit=2,
        successCondition=SUCCESS))

    assert rc == 0, (result, err)
    assert result["verdict"] == "Successful"
    assert [m["verdict"] for m in measurements(result)] == ["Failed", "Failed"]
    assert all(m["message"].startswith(SUCCESS + " does not hold for 0.")
               for m in measurements(result))


@pytest.mark.parametrize("no_data,verdict,rc", [
    ("fail", "Failed", 1), ("inconclusive", "Inconclusive", 2), ("pass", "Successful", 0)])
def test_a_canary_without_traffic_measures_nan_and_follows_no_data(prom, tmp_path, no_data,
                                                                    verdict, rc):
    got, result, err = analyse(tmp_path, on_prometheus(
        prom, error_rate("v4"), successCondition=SUCCESS, noData=no_data))

    assert got == rc, (result, err)
    assert result["verdict"] == verdict
    m = measurements(result)[0]
    assert m["values"] == ["NaN"]
    assert m["message"] == "no data (only NaN): noData is " + no_data


def test_a_release_without_series_is_no_data_and_inconclusive_by_default(prom, tmp_path):
    rc, result, err = analyse(tmp_path, on_prometheus(prom, error_rate("v9"),
                                                      successCondition=SUCCESS))

    assert rc == 2, (result, err)
    assert result["verdict"] == "Inconclusive"
    assert result["no_data"] == "inconclusive"
    m = measurements(result)[0]
    assert m["values"] == []
    assert m["message"] == ("no data (the query returned no series): noData is inconclusive")


@pytest.mark.parametrize("version,verdict,rc", [("v2", "Successful", 0), ("v3", "Failed", 1)])
def test_the_web_provider_reads_the_rate_from_prometheus_json(prom, tmp_path, version, verdict,
                                                              rc):
    got, result, err = analyse(tmp_path, on_web(prom, error_rate(version),
                                                successCondition=SUCCESS))

    assert got == rc, (result, err)
    assert result["verdict"] == verdict
    value = measurements(result)[0]["values"][0]
    if version == "v2":
        assert value == 0.0
    else:
        assert 0.4 <= value <= 0.6, value


def test_the_web_provider_has_no_data_where_the_path_finds_nothing(prom, tmp_path):
    rc, result, err = analyse(tmp_path, on_web(prom, error_rate("v9"), successCondition=SUCCESS,
                                               noData="fail"))

    assert rc == 1, (result, err)
    m = measurements(result)[0]
    assert m["values"] == []
    assert m["message"].startswith("no data (")
    assert m["message"].endswith("): noData is fail")


def test_a_background_analysis_measures_until_stopped(prom, tmp_path):
    proc = subprocess.Popen(
        [binary("tests/analysis_run"), write_analysis(tmp_path, on_prometheus(
            prom, error_rate("v2"), interval="500ms", successCondition=SUCCESS), "background")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.2)
        assert proc.poll() is None, "a background analysis ended by itself"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 0, (out, err)
    result = json.loads(out)
    assert result["verdict"] == "Successful"
    assert result["message"].startswith("stopped: ")
    assert len(measurements(result)) >= 3
    assert all(m["verdict"] == "Successful" for m in measurements(result))


def test_an_unreachable_prometheus_fails_after_the_consecutive_error_limit(tmp_path):
    port = free_port()
    rc, result, err = analyse(tmp_path, {
        "provider": {"prometheus": {"address": "http://127.0.0.1:%d" % port,
                                    "query": error_rate("v2")}},
        "interval": "200ms", "count": 5, "consecutiveErrorLimit": 1,
        "successCondition": SUCCESS})

    assert rc == 1, (result, err)
    ms = measurements(result)
    assert [m["verdict"] for m in ms] == ["Error", "Error"]
    assert all("127.0.0.1:%d" % port in m["message"] for m in ms)
    assert result["message"].startswith(
        "2 measurements in a row could not be taken (consecutiveErrorLimit 1): ")


def test_an_invalid_analysis_is_refused_with_its_position(tmp_path):
    path = tmp_path / "analysis.yaml"
    path.write_text("analysis:\n"
                    "  successCondition: result[0] < 0.05\n"
                    "  noData: maybe\n"
                    "  provider: {prometheus: {address: 'http://127.0.0.1:9', query: up}}\n")
    out = subprocess.run([binary("tests/analysis_run"), str(path)], capture_output=True,
                         text=True, timeout=30)

    assert out.returncode == 3
    assert out.stdout == ""
    assert out.stderr == ("%s:3:11: analysis.noData: expected fail, inconclusive or pass\n"
                          % path)
