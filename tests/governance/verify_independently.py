#!/usr/bin/env python3
"""Verifies a manifest's cosign signatures and Berth's promotion attestations with
an implementation written from the specs (DSSE v1 PAE, sigstore bundle v0.3,
in-toto Statement v1, cosign simple signing), sharing no code with Berth.

usage: verify_independently.py REGISTRY_URL REPO DIGEST SIGNER_PUB REGISTRY_PUB
Prints one JSON object: what verified. Exits 1 when something does not.
"""
import base64
import hashlib
import json
import sys
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

BUNDLE = "application/vnd.dev.sigstore.bundle"
PROMOTION = "https://berth.dev/attestation/promotion/v1"


def get(url, accept=None):
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req) as r:
        return r.read()


def pae(payload_type, payload):
    # DSSE v1: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def verifies(pub, sig, msg):
    try:
        pub.verify(sig, msg, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def key_hint(pub):
    der = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def blob(base, repo, digest):
    data = get(f"{base}/v2/{repo}/blobs/{digest}")
    algo, hexd = digest.split(":", 1)
    assert hashlib.new(algo, data).hexdigest() == hexd, "blob digest mismatch"
    return data


def main():
    base, repo, digest, signer_path, registry_path = sys.argv[1:6]
    signer = serialization.load_pem_public_key(open(signer_path, "rb").read())
    registry = serialization.load_pem_public_key(open(registry_path, "rb").read())
    out = {"bundle_signatures": 0, "simple_signatures": 0, "promotions": []}

    index = json.loads(get(f"{base}/v2/{repo}/referrers/{digest}", "application/vnd.oci.image.index.v1+json"))
    for d in index["manifests"]:
        if not d.get("artifactType", "").startswith(BUNDLE):
            continue
        manifest = json.loads(get(f"{base}/v2/{repo}/manifests/{d['digest']}"))
        assert manifest["subject"]["digest"] == digest
        (layer,) = manifest["layers"]
        bundle = json.loads(blob(base, repo, layer["digest"]))
        assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json", bundle["mediaType"]
        env = bundle["dsseEnvelope"]
        payload = base64.b64decode(env["payload"])
        sig = base64.b64decode(env["signatures"][0]["sig"])
        statement = json.loads(payload)
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        algo, hexd = digest.split(":", 1)
        assert any(s["digest"].get(algo) == hexd for s in statement["subject"]), "statement not about the digest"
        hint = bundle["verificationMaterial"]["publicKey"]["hint"]
        msg = pae(env["payloadType"], payload)
        if statement["predicateType"] == PROMOTION:
            if not verifies(registry, sig, msg) or hint != key_hint(registry):
                print(json.dumps({"error": "a promotion attestation does not verify with the registry key"}))
                sys.exit(1)
            out["promotions"].append(statement["predicate"])
        elif statement["predicateType"] == "https://sigstore.dev/cosign/sign/v1":
            if not verifies(signer, sig, msg) or hint != key_hint(signer):
                print(json.dumps({"error": "a bundle signature does not verify with the signer key"}))
                sys.exit(1)
            out["bundle_signatures"] += 1

    # cosign's legacy scheme: tag sha256-<hex>.sig, one simple-signing layer per signature.
    tag = digest.replace(":", "-") + ".sig"
    sig_manifest = json.loads(get(f"{base}/v2/{repo}/manifests/{tag}", "application/vnd.oci.image.manifest.v1+json"))
    for layer in sig_manifest["layers"]:
        payload = blob(base, repo, layer["digest"])
        body = json.loads(payload)
        assert body["critical"]["image"]["docker-manifest-digest"] == digest
        assert body["critical"]["type"] == "cosign container image signature"
        sig = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        if not verifies(signer, sig, payload):
            print(json.dumps({"error": "a simple signature does not verify"}))
            sys.exit(1)
        out["simple_signatures"] += 1
    print(json.dumps(out))


if __name__ == "__main__":
    main()
