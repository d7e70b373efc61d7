"""sluice-registry lifecycle against Debian's docker-registry, with images
built by the example's build-image.sh (umoci, no daemon) and pushed by its
push-image.sh (skopeo).

The repository holds production tags prod-1..prod-8 whose images were
created in another order than their names (prod-3 is the newest), prod-2
and prod-7 pushed as Docker v2 schema 2, prod-6 an OCI index of two images;
`latest` is the same image as prod-1, the oldest; dev-x matches no pattern;
feature-a and feature-b were moved to new images after a first run recorded
the old ones in the state file, whose first sightings are then aged by hand
(30 days back, all but feature-b's old image). The reference
policy (--keep-last 5 --tag-pattern 'prod-*' --expire-untagged 7d --keep
latest) must then delete exactly prod-4's and prod-2's manifests and
feature-a's old image, and prod-1's tag alone, which this registry cannot
do (it predates tag deletion) so the tag stays; nothing else. A dry run
first must list exactly that and change nothing; a second run deletes
nothing.

Apart from that repository: failures (registry unreachable, deletes
disabled, missing or wrong credentials) exit 1 with a message that says
what to do, bad usage exits 2, and credentials work both as HTTP Basic
(htpasswd) and through the Docker token flow (a registry with `auth.token`
and a token service of the test's own that signs with openssl)."""

import base64
import copy
import hashlib
import http.client
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import warnings

import pytest

from conftest import BUILD, REPO_ROOT
from harness import Proc, free_port, wait_for

APP = os.path.join(REPO_ROOT, "config", "examples", "mint-replica", "app")
BUILD_IMAGE = os.path.join(APP, "build-image.sh")
PUSH_IMAGE = os.path.join(APP, "push-image.sh")
SLUICE_REGISTRY = os.path.join(BUILD, "sluice-registry")
REPO = "mint/app"
DAY = 86400
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"])
POLICY = ["--keep-last", "5", "--tag-pattern", "prod-*", "--expire-untagged", "7d",
          "--keep", "latest"]
# Days after BASE of each production image's created time: not name order.
PROD_DAYS = {"prod-1": 1, "prod-2": 2, "prod-3": 8, "prod-4": 3, "prod-5": 4, "prod-7": 6,
             "prod-8": 7}
DOCKER_FORMAT = {"prod-2", "prod-7"}


class DockerRegistry:
    """/usr/bin/docker-registry serve on a free loopback port, its storage
    and log in root; deletes enabled unless said otherwise, Basic auth when
    htpasswd (a file of user:bcrypt lines) is given, token auth with the
    settings of `auth.token` when token is."""

    def __init__(self, root, delete=True, htpasswd=None, token=None):
        os.makedirs(root, exist_ok=True)
        self.host_port = "127.0.0.1:%d" % free_port()
        self.url = "http://" + self.host_port
        config = {
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": os.path.join(root, "data")},
                        "delete": {"enabled": delete}},
            "http": {"addr": self.host_port, "secret": "sluice-test-secret"},
        }
        if htpasswd:
            config["auth"] = {"htpasswd": {"realm": "sluice-test", "path": htpasswd}}
        if token:
            config["auth"] = {"token": token}
        cfg = os.path.join(root, "registry.json")
        with open(cfg, "w") as f:
            json.dump(config, f)
        self.proc = Proc("docker-registry", ["docker-registry", "serve", cfg], root, root)
        self.proc.start()
        try:
            wait_for("docker-registry to answer", lambda: self._answers(), 30,
                     procs=[self.proc])
        except BaseException:
            self.proc.stop()
            raise

    def _answers(self):
        try:
            return request("GET", self.url + "/v2/")[0] in (200, 401)
        except OSError:
            return False

    def stop(self):
        self.proc.stop()


def request(method, url, headers=None, body=None):
    """(status, {lower-case header: value}, body bytes) of one request."""
    rest = url.split("://", 1)[1]
    host, _, path = rest.partition("/")
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request(method, "/" + path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


class LoopbackServer:
    """An HTTP server of the test's own on a free loopback port, served by a
    thread from serve(handler) until stop(); handlers derive QuietHandler."""

    def serve(self, handler):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass


class RegistryProxy(LoopbackServer):
    """A proxy in front of a DockerRegistry that lets a test change what the
    registry answers: answer(method, path, forward) returns (status,
    {lower-case header: value}, body), forward(path=None) the registry's own
    answer to the request (or to the same request for another path)."""

    HOP_BY_HOP = {"connection", "content-length", "date", "keep-alive", "server",
                  "transfer-encoding"}

    def __init__(self, registry, answer):
        proxy = self

        class Handler(QuietHandler):
            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}

                def forward(path=None):
                    return request(self.command, registry.url + (path or self.path), headers,
                                   body)

                status, answered, data = answer(self.command, self.path, forward)
                self.send_response(status)
                for k, v in answered.items():
                    if k not in proxy.HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_DELETE = handle_one

        self.serve(Handler)


def tags(registry, repo=REPO):
    status, _, body = request("GET", "%s/v2/%s/tags/list" % (registry.url, repo))
    assert status == 200, body
    return sorted(json.loads(body)["tags"] or [])


def manifest_status(registry, ref, repo=REPO):
    """HEAD of a manifest by digest or tag: 200 while it exists, 404 after."""
    return request("HEAD", "%s/v2/%s/manifests/%s" % (registry.url, repo, ref),
                   {"Accept": ACCEPT})[0]


def tag_digest(registry, tag, repo=REPO):
    status, headers, _ = request("HEAD", "%s/v2/%s/manifests/%s" % (registry.url, repo, tag),
                                 {"Accept": ACCEPT})
    assert status == 200, (tag, status)
    return headers["docker-content-digest"]


def run(cmd, env=None, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, **(env or {})), **kw)
    return out


def build(root, layout, tag, created):
    """build-image.sh with a source tree of its own (so a digest of its own)
    and SOURCE_DATE_EPOCH=created; the digest it prints."""
    src = os.path.join(root, "src-" + tag)
    os.makedirs(src, exist_ok=True)
    with open(os.path.join(src, "server.py"), "w") as f:
        f.write("print('image %s')\n" % tag)
    out = run([BUILD_IMAGE, layout, tag, src], env={"SOURCE_DATE_EPOCH": str(int(created))})
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip().splitlines()[-1]


def push(root, registry, layout, tag, image_format=None):
    """push-image.sh; the digest it wrote to $SLUICE_OUTPUT, checked against
    what the registry serves for the tag."""
    output = os.path.join(root, "output-%s-%d" % (tag, time.monotonic_ns()))
    env = {"SLUICE_OUTPUT": output}
    if image_format:
        env["IMAGE_FORMAT"] = image_format
    out = run([PUSH_IMAGE, layout, tag, registry.host_port, REPO], env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    with open(output) as f:
        lines = f.read().splitlines()
    prefix = "image=%s/%s@" % (registry.host_port, REPO)
    assert len(lines) == 1 and lines[0].startswith(prefix), lines
    digest = lines[0][len(prefix):]
    assert digest == tag_digest(registry, tag)
    return digest


def push_config(registry, tag, config):
    """An image of no layers with the image config config, pushed as tag
    (or by its digest when tag is None) through the API itself; its digest."""
    body = json.dumps(dict(config, architecture="amd64", os="linux",
                           rootfs={"type": "layers", "diff_ids": []})).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    status, headers, _ = request("POST", "%s/v2/%s/blobs/uploads/" % (registry.url, REPO))
    assert status == 202, status
    upload = urllib.parse.urljoin(registry.url, headers["location"])
    status, _, answer = request("PUT", "%s%sdigest=%s" % (upload, "&" if "?" in upload else "?",
                                                          digest), body=body)
    assert status == 201, answer
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
                   "size": len(body)},
        "layers": []}).encode()
    return push_manifest(registry, tag, "application/vnd.oci.image.manifest.v1+json", manifest)


def push_manifest(registry, tag, media_type, body):
    """A manifest pushed as tag, or by its digest when tag is None; its
    digest."""
    ref = tag or "sha256:" + hashlib.sha256(body).hexdigest()
    status, headers, answer = request(
        "PUT", "%s/v2/%s/manifests/%s" % (registry.url, REPO, ref), {"Content-Type": media_type},
        body)
    assert status == 201, answer
    return headers["docker-content-digest"]


def push_index(registry, tag, children):
    """An OCI index of the image manifests children (digests), pushed as tag
    through the API; its digest."""
    listed = []
    for i, digest in enumerate(children):
        status, headers, _ = request("HEAD", "%s/v2/%s/manifests/%s" % (
            registry.url, REPO, digest), {"Accept": ACCEPT})
        assert status == 200, (digest, status)
        listed.append({"mediaType": headers["content-type"], "digest": digest,
                       "size": int(headers["content-length"]),
                       "platform": {"architecture": "arch%d" % i, "os": "linux"}})
    return push_manifest(registry, tag, "application/vnd.oci.image.index.v1+json", json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": listed}).encode())


def age_first_sightings(state, days):
    """Moves every first sighting of the state file days back."""
    with open(state) as f:
        recorded = json.load(f)
    then = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - days * DAY))
    for entry in recorded["digests"].values():
        entry["first_seen"] = then
    with open(state, "w") as f:
        json.dump(recorded, f)


def add_index(layout, tag, children):
    """An OCI index listing the layout's images children {tag: arch},
    tagged tag in the layout."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    refs = {m["annotations"]["org.opencontainers.image.ref.name"]: m
            for m in index["manifests"]}
    body = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [dict(refs[t], annotations={}, platform={"architecture": arch,
                                                                "os": "linux"})
                      for t, arch in children.items()],
    }).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest[7:]), "wb") as f:
        f.write(body)
    index["manifests"].append({
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
        "size": len(body), "annotations": {"org.opencontainers.image.ref.name": tag}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


def lifecycle(registry_url, *args, state=None):
    cmd = [SLUICE_REGISTRY, "lifecycle", "--registry", registry_url, "--repository", REPO]
    if state:
        cmd += ["--state", state]
    return run(cmd + list(args))


def snapshot(registry, digests):
    return tags(registry), {d: manifest_status(registry, d) for d in digests}


@pytest.fixture(scope="module")
def world():
    """The registry, its images, and the lifecycle runs the tests look at."""
    root = tempfile.mkdtemp(prefix="sluice-registry-")
    registry = DockerRegistry(os.path.join(root, "registry"))
    try:
        yield from _world(root, registry)
    finally:
        registry.stop()
        if not os.environ.get("SLUICE_KEEP_TMP"):
            shutil.rmtree(root, ignore_errors=True)


def _world(root, registry):
    layout = os.path.join(root, "oci")
    state = os.path.join(root, "state.json")
    base = int(time.time()) - 100 * DAY
    d = {}
    for tag, day in PROD_DAYS.items():
        build(root, layout, tag, base + day * DAY)
        d[tag] = push(root, registry, layout, tag,
                      "v2s2" if tag in DOCKER_FORMAT else None)
    # prod-6: an index of two images created on days 5 and 1.5.
    d["child-amd64"] = build(root, layout, "child-amd64", base + 5 * DAY)
    d["child-arm64"] = build(root, layout, "child-arm64", base + 1.5 * DAY)
    add_index(layout, "prod-6", {"child-amd64": "amd64", "child-arm64": "arm64"})
    d["prod-6"] = push(root, registry, layout, "prod-6")
    # latest: the very image of prod-1, the oldest production tag.
    out = run(["umoci", "tag", "--image", layout + ":prod-1", "latest"])
    assert out.returncode == 0, out.stderr
    d["latest"] = push(root, registry, layout, "latest")
    assert d["latest"] == d["prod-1"]
    build(root, layout, "dev-x", base)
    d["dev-x"] = push(root, registry, layout, "dev-x")
    for tag in ("feature-a", "feature-b"):
        build(root, layout, tag, base + DAY)
        d[tag + "-old"] = push(root, registry, layout, tag)

    first = lifecycle(registry.url, "--expire-untagged", "7d", state=state)

    # The feature tags move to new images; their old ones lose their tag.
    for tag in ("feature-a", "feature-b"):
        src = os.path.join(root, "src-" + tag)
        with open(os.path.join(src, "server.py"), "a") as f:
            f.write("print('second build')\n")
        out = run([BUILD_IMAGE, layout, tag, src],
                  env={"SOURCE_DATE_EPOCH": str(int(time.time()) - DAY)})
        assert out.returncode == 0, out.stderr
        d[tag] = push(root, registry, layout, tag)
    with open(state) as f:
        recorded = json.load(f)
    aged = copy.deepcopy(recorded)
    month_ago = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - 30 * DAY))
    for digest, entry in aged["digests"].items():
        if digest != d["feature-b-old"]:
            entry["first_seen"] = month_ago
    with open(state, "w") as f:
        json.dump(aged, f, indent=2)
    with open(state) as f:
        aged_text = f.read()

    every = sorted(set(d.values()))
    before = snapshot(registry, every)
    dry_json = lifecycle(registry.url, *POLICY, "--page-size", "3", "--dry-run", "--json",
                         state=state)
    dry_table = lifecycle(registry.url, *POLICY, "--page-size", "3", "--dry-run", state=state)
    with open(state) as f:
        after_dry_state = f.read()
    after_dry = snapshot(registry, every)
    real = lifecycle(registry.url, *POLICY, "--page-size", "3", state=state)
    after_real = snapshot(registry, every)
    with open(state) as f:
        state_after_real = json.load(f)
    second = lifecycle(registry.url, *POLICY, "--json", state=state)
    after_second = snapshot(registry, every)
    yield {
        "registry": registry, "root": root, "state": state, "d": d, "base": base,
        "first": first,
        "recorded": recorded, "aged_text": aged_text, "before": before,
        "dry_json": dry_json, "dry_table": dry_table, "after_dry_state": after_dry_state,
        "after_dry": after_dry, "real": real, "after_real": after_real,
        "state_after_real": state_after_real, "second": second,
        "after_second": after_second,
    }


def test_first_run_records_every_tagged_manifest_and_deletes_nothing(world):
    d, first = world["d"], world["first"]
    assert first.returncode == 0, first.stdout + first.stderr
    assert "deleted 0 manifests and 0 tags alone" in first.stdout
    recorded = world["recorded"]["digests"]
    reached = {d[t] for t in PROD_DAYS} | {d["prod-6"], d["child-amd64"], d["child-arm64"],
                                           d["dev-x"], d["feature-a-old"], d["feature-b-old"]}
    assert set(recorded) == reached
    assert recorded[d["child-arm64"]]["tags"] == ["prod-6"]
    assert sorted(recorded[d["prod-1"]]["tags"]) == ["latest", "prod-1"]
    assert world["recorded"]["repository"] == REPO


def test_dry_run_lists_exactly_the_policy_deletes_and_deletes_nothing(world):
    d, out = world["d"], world["dry_json"]
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["dry_run"] is True and report["state_saved"] is False
    deletes = [(x["reference"], x["by_tag"], x["tags"], x["status"])
               for x in report["deletes"]]
    assert deletes == [
        (d["prod-4"], False, ["prod-4"], "planned"),
        (d["prod-2"], False, ["prod-2"], "planned"),
        ("prod-1", True, ["prod-1"], "planned"),
        (d["feature-a-old"], False, [], "planned"),
    ]
    # Nothing changed: tags, manifests, state file.
    assert world["after_dry"] == world["before"]
    assert world["after_dry_state"] == world["aged_text"]


def test_dry_run_gives_every_tag_its_action_and_reason(world):
    d = world["d"]
    report = json.loads(world["dry_json"].stdout)
    rows = {(r["tag"] or r["digest"]): r for r in report["rows"]}
    # Every tag is there although the pages held 3 tags each.
    assert set(t for t in rows if not t.startswith("sha256:")) == set(world["before"][0])
    actions = {k: r["action"] for k, r in rows.items()}
    assert actions == {
        "prod-3": "keep", "prod-8": "keep", "prod-7": "keep", "prod-6": "keep",
        "prod-5": "keep", "prod-4": "delete", "prod-2": "delete", "prod-1": "untag",
        "latest": "keep", "dev-x": "keep", "feature-a": "keep", "feature-b": "keep",
        d["feature-a-old"]: "delete", d["feature-b-old"]: "keep",
    }
    assert rows["prod-3"]["reason"] == \
        "production tag 1 of 8 by created time: within the newest 5"
    assert rows["prod-4"]["reason"] == \
        "production tag 6 of 8 by created time: beyond the newest 5"
    assert "its manifest stays for tag latest, so only the tag is deleted" in \
        rows["prod-1"]["reason"]
    assert rows["latest"]["reason"] == "kept by --keep latest"
    assert rows["dev-x"]["reason"] == "not a production tag (matches no --tag-pattern)"
    assert "older than 7d" in rows[d["feature-a-old"]]["reason"]
    assert "as feature-a" in rows[d["feature-a-old"]]["reason"]
    assert "expires after" in rows[d["feature-b-old"]]["reason"]
    # The index's time is its newest image's (day 5), which ranks it 4th.
    assert rows["prod-6"]["created"] == time.strftime(
        "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(world["base"] + 5 * DAY))
    assert rows["prod-6"]["reason"].startswith("production tag 4 of 8")


def test_dry_run_table_names_each_delete_with_its_digest(world):
    d, out = world["d"], world["dry_table"]
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "(dry run: nothing is deleted)" in lines[0]
    assert lines[1].split() == ["ACTION", "TAG", "DIGEST", "CREATED", "RESULT", "REASON"]
    planned = [line.split()[:3] for line in lines[2:-1] if line.split()[0] in
               ("delete", "untag")]
    assert sorted(planned) == sorted([["delete", "prod-4", d["prod-4"]],
                                      ["delete", "prod-2", d["prod-2"]],
                                      ["untag", "prod-1", d["prod-1"]],
                                      ["delete", "-", d["feature-a-old"]]])
    assert lines[-1] == "dry run: would delete 3 manifests and 1 tags alone; nothing was deleted"


def test_run_deletes_exactly_what_the_policy_names(world):
    d, out = world["d"], world["real"]
    assert out.returncode == 0, out.stdout + out.stderr
    after_tags, heads = world["after_real"]
    assert after_tags == sorted(["prod-1", "prod-3", "prod-5", "prod-6", "prod-7", "prod-8",
                                 "latest", "dev-x", "feature-a", "feature-b"])
    gone = {d["prod-4"], d["prod-2"], d["feature-a-old"]}
    assert {k for k, v in heads.items() if v == 404} == gone
    assert all(v == 200 for k, v in heads.items() if k not in gone), heads
    assert out.stdout.splitlines()[-1] == (
        "deleted 3 manifests and 0 tags alone; 0 already gone, 1 tags the registry cannot "
        "delete alone, 0 failed")


def test_latest_keeps_the_old_production_image_and_its_tag(world):
    d, out = world["d"], world["real"]
    heads = world["after_real"][1]
    assert heads[d["prod-1"]] == 200 and tag_digest(world["registry"], "latest") == d["prod-1"]
    row = [line for line in out.stdout.splitlines() if line.startswith("untag ")]
    assert len(row) == 1 and row[0].split()[1:3] == ["prod-1", d["prod-1"]]
    assert " unsupported " in row[0]


def test_index_images_stay_while_their_index_is_kept(world):
    d = world["d"]
    heads = world["after_real"][1]
    assert heads[d["prod-6"]] == heads[d["child-amd64"]] == heads[d["child-arm64"]] == 200


def test_run_updates_the_state_file(world):
    d, st = world["d"], world["state_after_real"]["digests"]
    for gone in ("prod-4", "prod-2", "feature-a-old"):
        assert d[gone] not in st, gone
    for kept in ("feature-b-old", "feature-a", "feature-b", "prod-1", "child-arm64"):
        assert d[kept] in st, kept
    # First sightings survive; new images are first seen now.
    aged = json.loads(world["aged_text"])["digests"]
    assert st[d["prod-3"]]["first_seen"] == aged[d["prod-3"]]["first_seen"]
    assert st[d["feature-a"]]["first_seen"] > aged[d["prod-3"]]["first_seen"]
    assert st[d["feature-b-old"]]["tags"] == ["feature-b"]
    # An index remembers what it lists, for the runs after its tag is gone.
    assert sorted(st[d["prod-6"]]["children"]) == sorted(
        [d["child-amd64"], d["child-arm64"]]), st[d["prod-6"]]
    assert "children" not in st[d["prod-1"]], st[d["prod-1"]]


def test_second_run_deletes_nothing(world):
    out = world["second"]
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert [(x["reference"], x["status"]) for x in report["deletes"]] == \
        [("prod-1", "unsupported")]
    assert report["summary"]["manifests"] == 0 and report["summary"]["tags"] == 0
    assert world["after_second"] == world["after_real"]


def test_a_manifest_deleted_elsewhere_is_forgotten(world):
    registry, d, state = world["registry"], world["d"], world["state"]
    digest = d["feature-b-old"]
    status = request("DELETE", "%s/v2/%s/manifests/%s" % (registry.url, REPO, digest))[0]
    assert status == 202
    out = lifecycle(registry.url, *POLICY, "--json", state=state)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    forgotten = [r for r in report["rows"] if r["action"] == "forget"]
    assert [(r["digest"], r["result"]) for r in forgotten] == [(digest, "forgotten")]
    with open(state) as f:
        assert digest not in json.load(f)["digests"]


def tag_list_proxy(registry, page):
    """A RegistryProxy that cuts the registry's tag list (docker-registry 2.8
    lists every tag at once): page(path, query, tags) gives the tags of the
    page asked for and its Link header, or None."""
    def answer(method, path, forward):
        url = urllib.parse.urlsplit(path)
        if not url.path.endswith("/tags/list"):
            return forward()
        status, headers, body = forward(url.path)
        listed, link = page(url.path, urllib.parse.parse_qs(url.query),
                            sorted(json.loads(body)["tags"]))
        if link:
            headers["link"] = link
        return status, headers, json.dumps({"name": REPO, "tags": listed}).encode()

    return RegistryProxy(registry, answer)


def dry_run_actions(url, state, *args):
    """(tag, action) of every tag row of a --dry-run --json run."""
    out = lifecycle(url, *POLICY, *args, "--dry-run", "--json", state=state)
    assert out.returncode == 0, out.stderr
    return [(r["tag"], r["action"]) for r in json.loads(out.stdout)["rows"] if r["tag"]]


def test_tag_pages_follow_the_next_link_among_several(world, tmp_path):
    """A Link header may list other relations before rel="next" (RFC 8288):
    only the next page is followed, each tag read once."""
    registry = world["registry"]

    def page(path, query, listed):
        n, last = int(query["n"][0]), query.get("last", [""])[0]
        rest = [t for t in listed if t > last]
        links = ['<%s?n=%d>; rel="first"' % (path, n)] if last else []
        if len(rest) > n:
            links.append('<%s?n=%d&last=%s>; rel="next"' % (path, n, rest[n - 1]))
        return rest[:n], ", ".join(links)

    proxy = tag_list_proxy(registry, page)
    try:
        rows = dry_run_actions(proxy.url, str(tmp_path / "s.json"), "--page-size", "3")
    finally:
        proxy.stop()
    assert sorted(t for t, _ in rows) == tags(registry)


def test_a_tag_listed_twice_is_decided_once(world, tmp_path):
    """A registry that lists a tag on two pages (an offset-paged listing
    whose tags moved meanwhile) must not get the kept tag deleted as a
    second copy beyond the newest N: each name is one row, one decision."""
    registry = world["registry"]

    def page(path, query, listed):
        return listed, None if "again" in query else '<%s?again=1>; rel="next"' % path

    proxy = tag_list_proxy(registry, page)
    try:
        twice = dry_run_actions(proxy.url, str(tmp_path / "twice.json"))
    finally:
        proxy.stop()
    once = dry_run_actions(registry.url, str(tmp_path / "once.json"))
    assert sorted(t for t, _ in twice) == tags(registry)
    assert sorted(twice) == sorted(once)


def test_tag_pages_linked_in_a_cycle_fail_at_once(world, tmp_path):
    """A registry (or proxy) whose pages link round in a cycle longer than
    one page fails the run when a link leads back, with nothing deleted,
    instead of reading the same pages until the page limit."""
    registry = world["registry"]
    asked = []

    def page(path, query, listed):
        asked.append(query)
        half = len(listed) // 2
        if "b" in query:
            return listed[half:], '<%s?n=5&a=1>; rel="next"' % path
        return listed[:half], '<%s?n=5&b=1>; rel="next"' % path

    proxy = tag_list_proxy(registry, page)
    try:
        out = lifecycle(proxy.url, *POLICY, state=str(tmp_path / "s.json"))
    finally:
        proxy.stop()
    assert out.returncode == 1, out
    assert "the registry links a page of tags back to one it sent before" in out.stderr, \
        out.stderr
    # The first page, then b and a, whose link leads back to b.
    assert [sorted(q) for q in asked] == [["n"], ["b", "n"], ["a", "n"]], asked
    assert not os.path.exists(tmp_path / "s.json")


def test_unreachable_registry_is_a_clear_failure(tmp_path):
    url = "http://127.0.0.1:%d" % free_port()
    out = lifecycle(url, *POLICY, state=str(tmp_path / "s.json"))
    assert out.returncode == 1
    assert out.stderr.strip() == \
        "sluice-registry: cannot reach the registry %s: Connection refused" % url
    assert not (tmp_path / "s.json").exists()


@pytest.fixture(scope="module")
def no_delete_registry():
    root = tempfile.mkdtemp(prefix="sluice-registry-nodelete-")
    registry = DockerRegistry(os.path.join(root, "registry"), delete=False)
    try:
        yield root, registry
    finally:
        registry.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_disabled_deletes_say_how_to_enable_them(no_delete_registry):
    root, registry = no_delete_registry
    layout = os.path.join(root, "oci")
    now = int(time.time())
    for i, tag in enumerate(("prod-1", "prod-2", "prod-3")):
        build(root, layout, tag, now - (10 - i) * DAY)
        push(root, registry, layout, tag)
    out = lifecycle(registry.url, "--keep-last", "1", state=os.path.join(root, "s.json"))
    assert out.returncode == 1
    first = out.stderr.splitlines()[0]
    assert first.startswith("sluice-registry: cannot delete the manifest sha256:")
    assert "the registry refuses deletes: enable storage.delete (HTTP 405 from %s)" % \
        registry.url in first
    # The second delete is not sent after the first was refused.
    assert "not sent after" in out.stdout
    assert tags(registry) == ["prod-1", "prod-2", "prod-3"]


def test_a_tag_delete_refused_with_405_leaves_the_tag_and_the_run_goes_on(tmp_path):
    """The distribution spec 1.1 has a registry that does not delete tags
    answer 400 or 405: the tag stays (unsupported), deletes by digest are
    still sent and the run succeeds."""
    registry = DockerRegistry(str(tmp_path / "registry"))
    layout = str(tmp_path / "oci")
    now = int(time.time())
    d = {}
    try:
        for i, tag in enumerate(("prod-1", "prod-2", "prod-3")):
            build(str(tmp_path), layout, tag, now - (10 - i) * DAY)
            d[tag] = push(str(tmp_path), registry, layout, tag)
        out = run(["umoci", "tag", "--image", layout + ":prod-1", "latest"])
        assert out.returncode == 0, out.stderr
        push(str(tmp_path), registry, layout, "latest")

        def answer(method, path, forward):
            if method == "DELETE" and "/manifests/sha256:" not in path:
                return 405, {"content-type": "application/json"}, json.dumps({"errors": [
                    {"code": "UNSUPPORTED", "message": "tag deletion is disabled"}]}).encode()
            return forward()

        proxy = RegistryProxy(registry, answer)
        try:
            out = lifecycle(proxy.url, "--keep-last", "1", "--keep", "latest", "--json",
                            state=str(tmp_path / "s.json"))
        finally:
            proxy.stop()
        assert out.returncode == 0, out.stdout + out.stderr
        deletes = [(x["reference"], x["status"]) for x in json.loads(out.stdout)["deletes"]]
        assert deletes == [(d["prod-2"], "deleted"), ("prod-1", "unsupported")]
        assert tags(registry) == ["latest", "prod-1", "prod-3"]
    finally:
        registry.stop()


def test_a_created_time_before_1970_counts_as_none(tmp_path):
    """Go's zero time (0001-01-01), which some builders write, is no time:
    such a tag ranks with those without a time (then by name), after every
    tag with one, and says why."""
    registry = DockerRegistry(str(tmp_path / "registry"))
    try:
        push_config(registry, "prod-dated", {"created": "2026-01-01T00:00:00Z"})
        push_config(registry, "prod-zero", {"created": "0001-01-01T00:00:00Z"})
        push_config(registry, "prod-none", {})
        out = lifecycle(registry.url, "--keep-last", "2", "--dry-run", "--json",
                        state=str(tmp_path / "s.json"))
    finally:
        registry.stop()
    assert out.returncode == 0, out.stderr
    rows = {r["tag"]: r for r in json.loads(out.stdout)["rows"]}
    assert [(t, r["action"]) for t, r in rows.items()] == [
        ("prod-dated", "keep"), ("prod-zero", "keep"), ("prod-none", "delete")]
    assert rows["prod-zero"]["created"] is None
    assert '(its config\'s created time "0001-01-01T00:00:00Z" is before 1970)' in \
        rows["prod-zero"]["reason"]


def test_images_of_an_index_stay_while_its_delete_fails(tmp_path):
    """An index beyond the newest N is deleted, and the images it lists,
    seen long ago, expire with it; but while the index's delete fails (here
    500, from a proxy: docker-registry cannot be made to refuse one delete)
    it stays tagged, so its images must stay too or the tag could no longer
    be pulled. Once the index's delete succeeds, its images go in the same
    run."""
    registry = DockerRegistry(str(tmp_path / "registry"))
    failing = {"on": False}

    def answer(method, path, forward):
        if failing["on"] and method == "DELETE" and path.endswith(index):
            return 500, {"content-type": "application/json"}, json.dumps({"errors": [
                {"code": "UNKNOWN", "message": "storage unavailable"}]}).encode()
        return forward()

    proxy = None
    try:
        images = [push_config(registry, None, {"created": "2020-01-0%dT00:00:00Z" % day})
                  for day in (1, 2)]
        index = push_index(registry, "prod-1", images)
        push_config(registry, "prod-2", {"created": "2021-01-01T00:00:00Z"})
        proxy = RegistryProxy(registry, answer)
        state = str(tmp_path / "s.json")
        out = lifecycle(proxy.url, "--expire-untagged", "7d", state=state)
        assert out.returncode == 0, out.stdout + out.stderr
        age_first_sightings(state, 30)
        failing["on"] = True
        out = lifecycle(proxy.url, "--keep-last", "1", "--expire-untagged", "7d", "--json",
                        state=state)
        assert out.returncode == 1, out.stdout + out.stderr
        deletes = [(x["reference"], x["status"], x.get("message", ""))
                   for x in json.loads(out.stdout)["deletes"]]
        assert [(ref, status) for ref, status, _ in deletes] == \
            [(index, "failed")] + [(d, "failed") for d in sorted(images)]
        assert all(msg == "not sent: the index %s that lists it was not deleted" % index
                   for _, _, msg in deletes[1:])
        assert tags(registry) == ["prod-1", "prod-2"]
        assert [manifest_status(registry, d) for d in [index] + images] == [200, 200, 200]
        failing["on"] = False
        out = lifecycle(proxy.url, "--keep-last", "1", "--expire-untagged", "7d", "--json",
                        state=state)
        assert out.returncode == 0, out.stdout + out.stderr
        assert [(x["reference"], x["status"]) for x in json.loads(out.stdout)["deletes"]] == \
            [(index, "deleted")] + [(d, "deleted") for d in sorted(images)]
        assert tags(registry) == ["prod-2"]
        assert [manifest_status(registry, d) for d in [index] + images] == [404, 404, 404]
    finally:
        if proxy:
            proxy.stop()
        registry.stop()


def test_every_image_of_a_large_index_is_recorded_with_its_tag(tmp_path):
    """The state file names, for each manifest, the tags that reach it: for
    an index of 70 images (an index may list up to 1024) each image is
    reached by the index's tag. The images past the 64th were recorded with
    no tag."""
    registry = DockerRegistry(str(tmp_path / "registry"))
    try:
        images = [push_config(registry, None, {"created": "2020-01-01T00:00:00Z", "n": n})
                  for n in range(70)]
        push_index(registry, "prod-1", images)
        state = tmp_path / "s.json"
        out = lifecycle(registry.url, "--expire-untagged", "7d", state=str(state))
    finally:
        registry.stop()
    assert out.returncode == 0, out.stdout + out.stderr
    recorded = json.loads(state.read_text())["digests"]
    assert [d for d in images if recorded[d]["tags"] != ["prod-1"]] == []


def test_a_run_stopped_while_deleting_reports_and_remembers_what_it_did(tmp_path):
    """SIGTERM (systemd's stop, or TimeoutStartSec= on a large first
    clean-up) while deletes are sent: the delete in flight finishes, no
    other is sent, and the run still prints what it deleted, saves the
    state file and exits 1. It used to die at once, silent, with a manifest
    deleted and no state saved. A proxy holds each DELETE's answer a moment
    so that the signal comes while one is in flight."""
    registry = DockerRegistry(str(tmp_path / "registry"))
    sent = threading.Event()

    def answer(method, path, forward):
        answered = forward()
        if method == "DELETE":
            sent.set()
            time.sleep(1)
        return answered

    proxy = None
    try:
        d = {"prod-%d" % day: push_config(registry, "prod-%d" % day,
                                          {"created": "2020-01-0%dT00:00:00Z" % day})
             for day in (1, 2, 3)}
        proxy = RegistryProxy(registry, answer)
        state = tmp_path / "s.json"
        job = subprocess.Popen(
            [SLUICE_REGISTRY, "lifecycle", "--registry", proxy.url, "--repository", REPO,
             "--keep-last", "1", "--json", "--state", str(state)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert sent.wait(30)
        job.terminate()
        out, err = job.communicate(timeout=60)
    finally:
        if proxy:
            proxy.stop()
        registry.stop()
    assert job.returncode == 1, out + err
    assert err == "sluice-registry: stopped by SIGTERM: 1 deletes not sent\n"
    deletes = [(x["reference"], x["status"], x.get("message"))
               for x in json.loads(out)["deletes"]]
    assert deletes == [(d["prod-2"], "deleted", None),
                       (d["prod-1"], "failed", "not sent after: stopped by SIGTERM")]
    recorded = json.loads(state.read_text())["digests"]
    assert sorted(recorded) == sorted([d["prod-1"], d["prod-3"]])


@pytest.fixture(scope="module")
def auth_registry():
    root = tempfile.mkdtemp(prefix="sluice-registry-auth-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
        hashed = crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH))
    htpasswd = os.path.join(root, "htpasswd")
    with open(htpasswd, "w") as f:
        f.write("ci:%s\n" % hashed)
    registry = DockerRegistry(os.path.join(root, "registry"), htpasswd=htpasswd)
    try:
        yield root, registry
    finally:
        registry.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_missing_or_wrong_credentials_are_told_apart(auth_registry):
    root, registry = auth_registry
    out = lifecycle(registry.url, *POLICY, state=os.path.join(root, "s.json"))
    assert out.returncode == 1
    assert "needs credentials (HTTP 401)" in out.stderr
    assert "give --user-file or --token-file" in out.stderr
    wrong = os.path.join(root, "wrong")
    with open(wrong, "w") as f:
        f.write("ci:nope\n")
    out = lifecycle(registry.url, *POLICY, "--user-file", wrong,
                    state=os.path.join(root, "s.json"))
    assert out.returncode == 1
    assert "refused the credentials (HTTP 401)" in out.stderr


def test_basic_credentials_from_the_user_file_are_used(auth_registry):
    root, registry = auth_registry
    good = os.path.join(root, "good")
    with open(good, "w") as f:
        f.write("ci:s3cret\n")
    out = lifecycle(registry.url, *POLICY, "--user-file", good,
                    state=os.path.join(root, "s.json"))
    # Authenticated, the repository is looked up: it does not exist yet.
    assert out.returncode == 1
    assert out.stderr.strip() == \
        "sluice-registry: the registry %s has no repository %s" % (registry.url, REPO)


def test_a_state_file_of_another_repository_is_refused(world, tmp_path):
    registry = world["registry"]
    with open(world["state"]) as f:
        st = json.load(f)
    st["repository"] = "mint/other"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(st))
    out = lifecycle(registry.url, *POLICY, state=str(path))
    assert out.returncode == 1
    assert "is about mint/other at %s, not mint/app" % registry.url in out.stderr


def test_default_state_file_goes_to_the_state_directory(world, tmp_path):
    registry = world["registry"]
    out = run([SLUICE_REGISTRY, "lifecycle", "--registry", registry.url, "--repository", REPO,
               "--expire-untagged", "7d", "--dry-run", "--json"],
              env={"STATE_DIRECTORY": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    name = "sluice-registry-127.0.0.1_3a%s_2fmint_2fapp.json" % registry.host_port.split(":")[1]
    assert json.loads(out.stdout)["state_file"] == "%s/%s" % (tmp_path, name)


@pytest.mark.parametrize("args,message", [
    ([], "a command is needed"),
    (["prune"], "unknown command 'prune'"),
    (["lifecycle", "--registry", "http://r"], "--registry and --repository are needed"),
    (["lifecycle", "--registry", "ftp://r", "--repository", "a", "--keep-last", "1"],
     "only http and https"),
    (["lifecycle", "--registry", "http://r", "--repository", "Mint/App", "--keep-last", "1"],
     "not a repository name"),
    (["lifecycle", "--registry", "http://r", "--repository", "a"], "nothing to do"),
    (["lifecycle", "--registry", "http://r", "--repository", "a", "--keep-last", "0"],
     "--keep-last 0: expected a number from 1"),
    (["lifecycle", "--registry", "http://r", "--repository", "a", "--expire-untagged",
      "7 days"], "expected an age like 7d"),
    (["lifecycle", "--registry", "http://r", "--repository", "a", "--expire-untagged",
      "3651d"], "--expire-untagged 3651d: at most 3650d"),
    (["lifecycle", "--registry", "http://r", "--repository", "a", "--expire-untagged",
      "99999999999999999999d"], "--expire-untagged 99999999999999999999d: expected an age"),
    (["lifecycle", "--registry", "http://r", "--repository", "a", "--expire-untagged", "7d",
      "--tag-pattern", "prod-*"], "--tag-pattern only applies with --keep-last"),
    (["lifecycle", "--registry", "http://r", "--repository", "a", "--expire-untagged", "7d",
      "--whole-images"], "--whole-images only applies with --keep-last"),
    (["lifecycle", "--registry", "http://r", "--repository", "a", "--keep-last", "1",
      "--token-file", "t", "--user-file", "u"], "exclude each other"),
    (["lifecycle", "--bogus"], "unknown option --bogus"),
    (["lifecycle", "--registry"], "--registry needs a value"),
])
def test_bad_usage_exits_2_with_the_reason(args, message):
    out = run([SLUICE_REGISTRY] + args)
    assert out.returncode == 2, (args, out.stdout, out.stderr)
    assert out.stderr.startswith("sluice-registry: ") and message in out.stderr.splitlines()[0]
    assert "usage: sluice-registry lifecycle" in out.stderr


def test_build_and_push_scripts_reject_bad_usage(tmp_path):
    out = run([BUILD_IMAGE, str(tmp_path / "oci"), "bad tag!", str(tmp_path)])
    assert out.returncode == 2 and "not a valid tag" in out.stderr
    out = run([PUSH_IMAGE, str(tmp_path), "v1", "127.0.0.1:1", "mint/app"])
    assert out.returncode == 2 and "is not an OCI image layout" in out.stderr


class TokenService(LoopbackServer):
    """The token service of a registry with `auth: token` (the Docker token
    flow), as the registry's operators run one: Basic credentials in, a JWT
    signed with the key whose certificate the registry trusts out (RS256,
    signed by the openssl command line), granting the scope asked for. It
    records each scope asked for. The registry itself is the real one."""

    def __init__(self, root, user, password):
        self.key = os.path.join(root, "token.key")
        self.cert = os.path.join(root, "token.crt")
        out = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                   "-subj", "/CN=sluice-test-token", "-keyout", self.key, "-out", self.cert])
        assert out.returncode == 0, out.stderr
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             capture_output=True, check=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.scopes = []
        expected = "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
        service = self

        class Handler(QuietHandler):
            def do_GET(self):
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.end_headers()
                    return
                scope = query.get("scope", [""])[0]
                service.scopes.append(scope)
                body = json.dumps({"token": service.token(scope)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)
        self.realm = self.url + "/token"

    def token(self, scope):
        def b64(data):
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        access = []
        if scope:
            kind, name, actions = scope.split(":")
            access = [{"type": kind, "name": name, "actions": actions.split(",")}]
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "x5c": [self.x5c]}
        claims = {"iss": "sluice-test-issuer", "sub": "ci", "aud": "sluice-test",
                  "exp": now + 300, "nbf": now - 10, "iat": now,
                  "jti": "%d-%d" % (now, len(self.scopes)), "access": access}
        signing_input = (b64(json.dumps(header).encode()) + "." +
                         b64(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), capture_output=True,
                             check=True).stdout
        return signing_input + "." + b64(sig)


@pytest.fixture(scope="module")
def token_registry():
    root = tempfile.mkdtemp(prefix="sluice-registry-token-")
    tokens = TokenService(root, "ci", "s3cret")
    registry = None
    try:
        registry = DockerRegistry(os.path.join(root, "registry"), token={
            "realm": tokens.realm, "service": "sluice-test", "issuer": "sluice-test-issuer",
            "rootcertbundle": tokens.cert})
        yield root, registry, tokens
    finally:
        if registry:
            registry.stop()
        tokens.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_docker_token_flow_gets_a_token_for_each_scope(token_registry):
    root, registry, tokens = token_registry
    token_file = os.path.join(root, "token")
    layout = os.path.join(root, "oci")
    now = int(time.time())
    creds = os.path.join(root, "user")
    with open(creds, "w") as f:
        f.write("ci:s3cret\n")
    auth = os.path.join(root, "auth.json")
    with open(auth, "w") as f:
        json.dump({"auths": {registry.host_port: {
            "auth": base64.b64encode(b"ci:s3cret").decode()}}}, f)
    for i, tag in enumerate(("prod-1", "prod-2")):
        build(root, layout, tag, now - (10 - i) * DAY)
        out = run([PUSH_IMAGE, layout, tag, registry.host_port, REPO],
                  env={"REGISTRY_AUTH_FILE": auth})
        assert out.returncode == 0, out.stdout + out.stderr
    del tokens.scopes[:]
    out = lifecycle(registry.url, "--keep-last", "1", "--user-file", creds, "--json",
                    state=os.path.join(root, "s.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert [(x["tags"], x["status"]) for x in report["deletes"]] == [(["prod-1"], "deleted")]
    # A token without scope for /v2/, one to read, one to delete.
    assert "repository:%s:pull" % REPO in tokens.scopes
    assert "repository:%s:delete" % REPO in tokens.scopes
    # A token given as is (--token-file) is sent without any exchange.
    with open(token_file, "w") as f:
        f.write(tokens.token("repository:%s:pull" % REPO) + "\n")
    del tokens.scopes[:]
    out = lifecycle(registry.url, "--keep-last", "1", "--token-file", token_file,
                    "--dry-run", state=os.path.join(root, "s.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert tokens.scopes == []
    # Without credentials the anonymous token is refused.
    out = lifecycle(registry.url, "--keep-last", "1", state=os.path.join(root, "s.json"))
    assert out.returncode == 1
    assert "refused an anonymous token (HTTP 401)" in out.stderr
