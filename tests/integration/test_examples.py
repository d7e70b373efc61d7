"""The example configurations under config/examples/ are valid: `sluicectl
validate` accepts every settings and pipeline file as it is, and the
example deployment's Prometheus configuration passes promtool.

The files point into the checkout's run/ directory (the webhook secret, the
broker's address file), so they are checked in a copy laid out like the
checkout, with those two files made up.
"""

import os
import shutil
import subprocess

from harness import binary

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def checkout_copy(tmp_path):
    top = tmp_path / "checkout"
    shutil.copytree(os.path.join(REPO_ROOT, "config", "examples"),
                    top / "config" / "examples")
    (top / "run").mkdir()
    (top / "run" / "webhook-secret").write_text("s3cret")
    (top / "run" / "devbroker.bootstrap").write_text("127.0.0.1:9092\n")
    return top / "config" / "examples"


def validate(cwd, *files):
    return subprocess.run([binary("sluicectl"), "validate"] + list(files), cwd=cwd,
                          capture_output=True, text=True, timeout=30)


def test_the_simple_example_is_valid(tmp_path):
    examples = checkout_copy(tmp_path)
    r = validate(examples, "sluice.yaml", "pipelines.d/reference.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "sluice.yaml: ok (settings; 1 pipeline in %s/pipelines.d: example)" % examples,
        "pipelines.d/reference.yaml: ok (pipeline example: 5 stages, environments "
        "development \u2192 staging \u2192 production)",
    ], r.stdout


def test_the_example_deployment_is_valid(tmp_path):
    examples = checkout_copy(tmp_path)
    here = examples / "mint-replica"
    r = validate(here, "sluice.yaml", "pipelines.d/mint-replica.yaml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "sluice.yaml: ok (settings; 1 pipeline in %s/pipelines.d: mint-replica)" % here,
        "pipelines.d/mint-replica.yaml: ok (pipeline mint-replica: 5 stages, environments "
        "development \u2192 staging \u2192 production)",
    ], r.stdout


def test_the_example_deployment_with_short_pauses_is_valid(tmp_path):
    # What `make run` runs: the pauses shortened (SLUICE_DEMO_PAUSE).
    here = checkout_copy(tmp_path) / "mint-replica"
    pipeline = here / "pipelines.d" / "mint-replica.yaml"
    text = pipeline.read_text()
    assert text.count("pause: {duration: 10m}") == 2
    pipeline.write_text(text.replace("pause: {duration: 10m}", "pause: {duration: 20s}"))
    r = validate(here, "pipelines.d/mint-replica.yaml")
    assert r.returncode == 0, r.stderr


def test_the_example_deployments_prometheus_configuration_passes_promtool(tmp_path):
    with open(os.path.join(REPO_ROOT, "config", "examples", "mint-replica",
                           "prometheus.yml.in")) as f:
        text = f.read()
    assert "@AGENT@" in text
    (tmp_path / "prometheus.yml").write_text(text.replace("@AGENT@", "127.0.0.1:8080"))
    r = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
