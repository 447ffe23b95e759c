#!/usr/bin/env python3
"""Drive a registry with the oras Python SDK (PyPI `oras`) as a real client would.

Usage: oras_roundtrip.py REGISTRY_HOSTPORT      (plain HTTP, e.g. 127.0.0.1:5000)

Part 1, plain OCI artifacts (works on any distribution-spec registry):
  1. SDK push of a multi-file artifact (a few-MiB weights file, small files, an empty
     file, a directory with nested files) with manifest annotations, then SDK pull into
     a fresh directory and a byte-for-byte comparison.
  2. The same files pushed with the SDK's chunked upload (POST, several PATCH, PUT).
  3. An OCI 1.1 artifact manifest with `artifactType`, annotations, the empty config
     and a layer whose title is a nested path, pushed as raw bytes through the SDK's
     HTTP session (the SDK has no artifactType argument); read back byte-identical by
     tag and digest and pulled with the SDK.
Part 2, the referrers API (OCI distribution-spec v1.1):
  4. A referrer (own artifactType, `subject` = the manifest from step 3) pushed by
     digest, and a second one pushed by the SDK with `subject` and only a config media
     type; both discovered through GET /v2/<name>/referrers/<digest>, with
     `?artifactType=` filtering.

The SDK's retry-with-backoff is switched off so that server errors surface at once.
Exits non-zero with a message naming the failing step (and the last HTTP exchange).
"""

import functools
import hashlib
import json
import os
import random
import sys
import tempfile
import traceback
import urllib.parse

try:
    import oras.defaults
    import oras.logger
    import oras.oci
    import oras.provider
except ImportError:
    print("FAIL: python module `oras` is missing: run scripts/install-test-deps.sh", file=sys.stderr)
    sys.exit(2)

MANIFEST_MT = "application/vnd.oci.image.manifest.v1+json"
INDEX_MT = "application/vnd.oci.image.index.v1+json"
EMPTY_MT = "application/vnd.oci.empty.v1+json"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
ARTIFACT_TYPE = "application/vnd.berth.test.model.v1"
REPORT_TYPE = "application/vnd.berth.test.report+json"
SBOM_CONFIG_TYPE = "application/vnd.berth.test.sbom.config+json"
TITLE = "org.opencontainers.image.title"
HTTP_TIMEOUT = 120  # seconds per request: a hung server fails the test instead of hanging it


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def ok(msg):
    print(f"ok   {msg}", flush=True)


def section(msg):
    print(f"== {msg}", flush=True)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class NoRetryRegistry(oras.provider.Registry):
    """The SDK's Registry with its retry decorator removed from do_request."""

    do_request = oras.provider.Registry.do_request.__wrapped__


class Recorder:
    """Keeps the last HTTP exchanges so that a failure can show what the server said."""

    def __init__(self):
        self.last = []

    def hook(self, response, *args, **kwargs):
        self.last = (self.last + [response])[-3:]

    def dump(self):
        out = []
        for r in self.last:
            req = r.request
            out.append(f"  > {req.method} {req.url}")
            for k in ("Content-Type", "Content-Length", "Content-Range", "Accept"):
                if k in req.headers:
                    out.append(f"  > {k}: {req.headers[k]}")
            out.append(f"  < {r.status_code} {r.reason}")
            for k, v in r.headers.items():
                out.append(f"  < {k}: {v}")
            if not r.raw or r.raw.closed or r._content_consumed:
                body = r.content if r._content_consumed else b""
            else:
                body = b"(streamed body not read)"
            if body:
                out.append("  < " + body[:600].decode("utf-8", "replace"))
        return "\n".join(out)


def make_client(host, recorder):
    client = NoRetryRegistry(hostname=host, insecure=True)
    client.session.hooks["response"].append(recorder.hook)
    client.session.request = functools.partial(client.session.request, timeout=HTTP_TIMEOUT)
    return client


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def tree(root):
    """Relative path -> bytes of every regular file under root."""
    files = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, "rb") as f:
                files[os.path.relpath(p, root)] = f.read()
    return files


def compare_trees(expected_root, actual_root, what):
    exp, act = tree(expected_root), tree(actual_root)
    missing = sorted(set(exp) - set(act))
    extra = sorted(set(act) - set(exp))
    check(not missing, f"{what}: files missing after pull: {missing}")
    check(not extra, f"{what}: unexpected files after pull: {extra}")
    for name in sorted(exp):
        if exp[name] != act[name]:
            fail(
                f"{what}: {name} differs: pushed {len(exp[name])} bytes {sha256(exp[name])}, "
                f"pulled {len(act[name])} bytes {sha256(act[name])}"
            )
    return len(exp), sum(len(v) for v in exp.values())


def expect_status(resp, codes, what):
    if resp.status_code not in codes:
        fail(f"{what}: expected HTTP {codes}, got {resp.status_code} {resp.reason}")


def get_manifest_raw(client, repo, ref):
    url = f"http://{client.hostname}/v2/{repo}/manifests/{ref}"
    r = client.do_request(url, "GET", headers={"Accept": ", ".join([MANIFEST_MT, INDEX_MT])})
    expect_status(r, [200], f"GET manifest {repo}:{ref}")
    return r


def put_manifest_raw(client, repo, ref, body, media_type=MANIFEST_MT):
    url = f"http://{client.hostname}/v2/{repo}/manifests/{ref}"
    r = client.do_request(url, "PUT", data=body, headers={"Content-Type": media_type})
    expect_status(r, [201], f"PUT manifest {repo}:{ref}")
    digest = sha256(body)
    got = r.headers.get("Docker-Content-Digest")
    check(got == digest, f"PUT manifest {repo}:{ref}: Docker-Content-Digest {got!r}, expected {digest}")
    check(r.headers.get("Location"), f"PUT manifest {repo}:{ref}: no Location header")
    return r


def upload(client, repo, path, media_type, title=None):
    """Upload one file as a blob with the SDK and return its descriptor."""
    desc = oras.oci.NewLayer(path, media_type=media_type)
    if title:
        desc["annotations"] = {TITLE: title}
    resp = client.upload_blob(path, client.get_container(f"{client.hostname}/{repo}"), desc)
    expect_status(resp, [200, 201, 202], f"upload blob {path}")
    return desc


def make_source(root):
    rng = random.Random(20240611)
    write(os.path.join(root, "model.safetensors"), rng.randbytes(5 * 1024 * 1024 + 4321))
    write(os.path.join(root, "config.json"), json.dumps({"arch": "berth-test", "layers": 2}).encode())
    write(os.path.join(root, "README.md"), "# test model\n\nnon-ASCII: \u00e9\u00df\u2603\n".encode())
    write(os.path.join(root, "empty.bin"), b"")
    write(os.path.join(root, "tokenizer", "tokenizer.json"), b'{"vocab": {"a": 0, "b": 1}}')
    write(os.path.join(root, "tokenizer", "nested", "merges.txt"), b"a b\nab c\n" * 100)


def part1(client, host, work):
    repo = "berth-test/oras-model"
    src = os.path.join(work, "src")
    make_source(src)
    files = [
        "model.safetensors:application/vnd.berth.test.weights",
        "config.json:application/json",
        "README.md:text/markdown",
        "empty.bin",
        "tokenizer",  # a directory: the SDK tars and gzips it
    ]
    annotations = {
        "org.opencontainers.image.description": "berth real-client test",
        "org.opencontainers.image.version": "1.0.0",
        "vnd.berth.test.metric.accuracy": "0.987",
    }

    section("part 1: push/pull with the oras SDK")
    cwd = os.getcwd()
    os.chdir(src)  # the SDK wants files relative to the working directory
    try:
        resp = client.push(
            target=f"{host}/{repo}:v1", files=files, manifest_annotations=annotations, quiet=True
        )
        expect_status(resp, [201], "SDK push v1")
        v1_digest = resp.headers.get("Docker-Content-Digest")
        ok(f"SDK push {repo}:v1 ({len(files)} entries) -> {v1_digest}")

        # The same files with the chunked upload path (POST, PATCH x N, PUT).
        resp = client.push(
            target=f"{host}/berth-test/oras-chunked:v1",
            files=files,
            manifest_annotations=annotations,
            do_chunked=True,
            chunk_size=1024 * 1024,
            quiet=True,
        )
        expect_status(resp, [201], "SDK chunked push")
        ok("SDK chunked push berth-test/oras-chunked:v1 (1 MiB chunks)")
    finally:
        os.chdir(cwd)

    raw = get_manifest_raw(client, repo, "v1")
    check(sha256(raw.content) == v1_digest, f"GET {repo}:v1: body digest {sha256(raw.content)} != pushed {v1_digest}")
    check(
        raw.headers.get("Docker-Content-Digest") == v1_digest,
        f"GET {repo}:v1: Docker-Content-Digest {raw.headers.get('Docker-Content-Digest')!r} != {v1_digest}",
    )
    check(raw.headers.get("Content-Type", "").startswith(MANIFEST_MT), f"GET {repo}:v1: Content-Type {raw.headers.get('Content-Type')!r}")
    v1 = raw.json()
    for k, v in annotations.items():
        check(v1.get("annotations", {}).get(k) == v, f"{repo}:v1: annotation {k} lost: {v1.get('annotations')}")
    titles = sorted(layer.get("annotations", {}).get(TITLE) for layer in v1["layers"])
    check(titles == sorted(["model.safetensors", "config.json", "README.md", "empty.bin", "tokenizer"]), f"layer titles {titles}")
    ok(f"GET manifest {repo}:v1: digest, Content-Type, annotations and layer titles as pushed")

    for tgt, name in ((f"{host}/{repo}:v1", "v1"), (f"{host}/berth-test/oras-chunked:v1", "chunked")):
        out = os.path.join(work, f"pull-{name}")
        client.pull(target=tgt, outdir=out)
        n, size = compare_trees(src, out, f"pull {tgt}")
        ok(f"SDK pull {tgt}: {n} files, {size} bytes identical")

    # An OCI 1.1 artifact: artifactType, the empty config, annotations, nested titles.
    section("part 1: artifactType manifest through the SDK's HTTP session")
    extra = os.path.join(work, "extra")
    write(os.path.join(extra, "nested", "dir", "notes.txt"), b"nested file\n" * 50)
    write(os.path.join(extra, "empty.json"), b"{}")
    cfg = upload(client, repo, os.path.join(extra, "empty.json"), EMPTY_MT)
    check(cfg["digest"] == EMPTY_DIGEST and cfg["size"] == 2, f"empty config descriptor {cfg}")
    notes = upload(client, repo, os.path.join(extra, "nested", "dir", "notes.txt"), "text/plain", title="nested/dir/notes.txt")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MT,
        "artifactType": ARTIFACT_TYPE,
        "config": cfg,
        "layers": v1["layers"] + [notes],
        "annotations": dict(annotations, **{"org.opencontainers.image.created": "2024-06-11T00:00:00Z"}),
    }
    # Non-canonical formatting on purpose: the registry must keep the bytes as pushed.
    body = json.dumps(manifest, indent=3).encode() + b"\n"
    v2_digest = sha256(body)
    put_manifest_raw(client, repo, "v2", body)
    ok(f"PUT {repo}:v2 artifactType={ARTIFACT_TYPE} -> {v2_digest}")
    for ref in ("v2", v2_digest):
        r = get_manifest_raw(client, repo, ref)
        check(r.content == body, f"GET {repo}:{ref}: body differs from the pushed bytes ({len(r.content)} vs {len(body)} bytes)")
        check(r.headers.get("Docker-Content-Digest") == v2_digest, f"GET {repo}:{ref}: Docker-Content-Digest {r.headers.get('Docker-Content-Digest')!r}")
        check(r.headers.get("Content-Type", "").startswith(MANIFEST_MT), f"GET {repo}:{ref}: Content-Type {r.headers.get('Content-Type')!r}")
        check(r.json().get("artifactType") == ARTIFACT_TYPE, f"GET {repo}:{ref}: artifactType lost")
    head = client.do_request(f"http://{host}/v2/{repo}/manifests/v2", "HEAD", headers={"Accept": MANIFEST_MT})
    expect_status(head, [200], f"HEAD {repo}:v2")
    check(head.headers.get("Docker-Content-Digest") == v2_digest, f"HEAD {repo}:v2: Docker-Content-Digest {head.headers.get('Docker-Content-Digest')!r}")
    check(head.headers.get("Content-Length") == str(len(body)), f"HEAD {repo}:v2: Content-Length {head.headers.get('Content-Length')!r}, expected {len(body)}")
    ok(f"GET/HEAD {repo}:v2 and @digest: bytes identical, artifactType kept")

    out = os.path.join(work, "pull-v2")
    client.pull(target=f"{host}/{repo}@{v2_digest}", outdir=out)
    expected = os.path.join(work, "expected-v2")
    for rel, data in list(tree(src).items()) + [("nested/dir/notes.txt", b"nested file\n" * 50)]:
        write(os.path.join(expected, rel), data)
    n, size = compare_trees(expected, out, f"pull {repo}@{v2_digest}")
    ok(f"SDK pull {repo}@{v2_digest[:19]}...: {n} files incl. nested/dir/notes.txt, {size} bytes identical")

    tags = client.get_tags(f"{host}/{repo}")
    check(sorted(tags) == ["v1", "v2"], f"tags of {repo}: {tags}")
    ok(f"tags of {repo}: {tags}")
    return repo, {"mediaType": MANIFEST_MT, "digest": v2_digest, "size": len(body)}, v1_digest


def referrers(client, repo, digest, artifact_type=None):
    url = f"http://{client.hostname}/v2/{repo}/referrers/{digest}"
    if artifact_type:
        # percent-encoded like oras-go does ('+' unencoded would read as a space)
        url += "?artifactType=" + urllib.parse.quote(artifact_type, safe="")
    r = client.do_request(url, "GET", headers={"Accept": INDEX_MT})
    expect_status(r, [200], f"GET {url}")
    ct = r.headers.get("Content-Type", "")
    check(ct.startswith(INDEX_MT), f"GET {url}: Content-Type {ct!r}, expected {INDEX_MT}")
    idx = r.json()
    check(idx.get("schemaVersion") == 2, f"GET {url}: schemaVersion {idx.get('schemaVersion')!r}")
    check(idx.get("mediaType") == INDEX_MT, f"GET {url}: mediaType {idx.get('mediaType')!r}")
    check(isinstance(idx.get("manifests"), list), f"GET {url}: no manifests list: {idx}")
    return r, idx["manifests"]


def part2(client, host, work, repo, subject, v1_digest):
    section("part 2: referrers API (OCI distribution-spec v1.1)")
    d = os.path.join(work, "referrer")
    report_bytes = json.dumps({"eval": "held-out", "accuracy": 0.987}).encode()
    write(os.path.join(d, "report.json"), report_bytes)
    write(os.path.join(d, "empty.json"), b"{}")
    cfg = upload(client, repo, os.path.join(d, "empty.json"), EMPTY_MT)
    layer = upload(client, repo, os.path.join(d, "report.json"), "application/json", title="report.json")
    report_annotations = {"org.opencontainers.image.created": "2024-06-11T00:00:00Z", "vnd.berth.test.kind": "eval-report"}
    report = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MT,
        "artifactType": REPORT_TYPE,
        "config": cfg,
        "layers": [layer],
        "subject": subject,
        "annotations": report_annotations,
    }
    body = json.dumps(report, separators=(",", ":")).encode()
    report_digest = sha256(body)
    r = put_manifest_raw(client, repo, report_digest, body)
    check(
        r.headers.get("OCI-Subject") == subject["digest"],
        f"PUT referrer {repo}@{report_digest}: OCI-Subject header {r.headers.get('OCI-Subject')!r}, expected {subject['digest']}",
    )
    ok(f"PUT referrer by digest {report_digest[:19]}... artifactType={REPORT_TYPE}, OCI-Subject returned")

    # A second referrer pushed by the SDK itself: subject set, no artifactType, so the
    # referrers API must report its config media type as the artifactType.
    write(os.path.join(d, "sbom", "sbom.json"), b'{"packages": []}')
    write(os.path.join(d, "sbom", "config.json"), b'{"format": "test"}')
    cwd = os.getcwd()
    os.chdir(os.path.join(d, "sbom"))
    try:
        resp = client.push(
            target=f"{host}/{repo}:sbom",
            files=["sbom.json:application/json"],
            manifest_config=f"config.json:{SBOM_CONFIG_TYPE}",
            subject=oras.oci.Subject(mediaType=subject["mediaType"], digest=subject["digest"], size=subject["size"]),
            quiet=True,
        )
    finally:
        os.chdir(cwd)
    expect_status(resp, [201], "SDK push with subject")
    sbom_raw = get_manifest_raw(client, repo, "sbom").content
    sbom_digest = sha256(sbom_raw)
    check(resp.headers.get("Docker-Content-Digest") == sbom_digest, "SDK push with subject: digest mismatch")
    ok(f"SDK push {repo}:sbom with subject (config type {SBOM_CONFIG_TYPE}) -> {sbom_digest[:19]}...")

    r, found = referrers(client, repo, subject["digest"])
    by_digest = {m.get("digest"): m for m in found}
    check(
        set(by_digest) == {report_digest, sbom_digest},
        f"referrers of {subject['digest']}: expected {{{report_digest}, {sbom_digest}}}, got {json.dumps(found)}",
    )
    rep = by_digest[report_digest]
    check(rep.get("mediaType") == MANIFEST_MT, f"report descriptor mediaType {rep.get('mediaType')!r}")
    check(rep.get("size") == len(body), f"report descriptor size {rep.get('size')!r}, expected {len(body)}")
    check(rep.get("artifactType") == REPORT_TYPE, f"report descriptor artifactType {rep.get('artifactType')!r}")
    check(rep.get("annotations") == report_annotations, f"report descriptor annotations {rep.get('annotations')!r}, expected {report_annotations}")
    sb = by_digest[sbom_digest]
    check(sb.get("size") == len(sbom_raw), f"sbom descriptor size {sb.get('size')!r}, expected {len(sbom_raw)}")
    check(
        sb.get("artifactType") == SBOM_CONFIG_TYPE,
        f"sbom descriptor artifactType {sb.get('artifactType')!r}, expected the config media type {SBOM_CONFIG_TYPE}",
    )
    ok(f"GET /v2/{repo}/referrers/<digest>: image index with both referrers, artifactType and annotations")

    r, found = referrers(client, repo, subject["digest"], REPORT_TYPE)
    check([m.get("digest") for m in found] == [report_digest], f"referrers ?artifactType={REPORT_TYPE}: got {json.dumps(found)}")
    applied = r.headers.get("OCI-Filters-Applied", "")
    check("artifactType" in applied, f"referrers ?artifactType=: OCI-Filters-Applied header {applied!r}, expected 'artifactType'")
    r, found = referrers(client, repo, subject["digest"], SBOM_CONFIG_TYPE)
    check([m.get("digest") for m in found] == [sbom_digest], f"referrers ?artifactType={SBOM_CONFIG_TYPE}: got {json.dumps(found)}")
    r, found = referrers(client, repo, subject["digest"], "application/vnd.berth.test.none")
    check(found == [], f"referrers ?artifactType=<unused>: expected none, got {json.dumps(found)}")
    ok("referrers ?artifactType= filtering (OCI-Filters-Applied: artifactType)")

    r, found = referrers(client, repo, v1_digest)
    check(found == [], f"referrers of {v1_digest} (has none): got {json.dumps(found)}")
    unknown = sha256(b"no such manifest")
    r, found = referrers(client, repo, unknown)
    check(found == [], f"referrers of unknown {unknown}: got {json.dumps(found)}")
    ok("referrers of a manifest without referrers and of an unknown digest: empty index")

    out = os.path.join(work, "pull-report")
    client.pull(target=f"{host}/{repo}@{report_digest}", outdir=out)
    with open(os.path.join(out, "report.json"), "rb") as f:
        check(f.read() == report_bytes, "pulled report.json differs")
    ok("SDK pull of the referrer by digest: report.json identical")


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} REGISTRY_HOSTPORT", file=sys.stderr)
        return 2
    host = sys.argv[1]
    oras.logger.setup_logger(quiet=True)
    recorder = Recorder()
    client = make_client(host, recorder)
    with tempfile.TemporaryDirectory(prefix="berth-oras-") as work:
        stage = "part 1 (push/pull)"
        try:
            repo, subject, v1_digest = part1(client, host, work)
            ok("part 1 passed: push, chunked push, artifactType manifest, pull byte-identical")
            stage = "part 2 (referrers API)"
            part2(client, host, work, repo, subject, v1_digest)
        except Failure as e:
            print(f"FAIL in {stage}: {e}", file=sys.stderr)
            print("last HTTP exchanges:\n" + recorder.dump(), file=sys.stderr)
            return 1
        except Exception as e:  # the SDK raises plain exceptions on HTTP errors
            traceback.print_exc()
            print(f"FAIL in {stage}: {type(e).__name__}: {e}", file=sys.stderr)
            print("last HTTP exchanges:\n" + recorder.dump(), file=sys.stderr)
            return 1
    print("oras roundtrip: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
