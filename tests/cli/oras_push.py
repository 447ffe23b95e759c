#!/usr/bin/env python3
"""Push a directory's top-level entries with the oras Python SDK (PyPI `oras`).

Usage: oras_push.py REGISTRY_HOSTPORT REPO:TAG SOURCE_DIR     (plain HTTP)

Files become layers titled with their names; directories are tarred and gzipped by
the SDK (annotation io.deis.oras.content.unpack=true), as `oras push` does. Prints
the manifest digest. Used by tests/cli_push_pull.rs to check that `berth pull`
reads what oras writes.
"""

import functools
import os
import sys

try:
    import oras.provider
except ImportError:
    print("FAIL: python module `oras` is missing: run scripts/install-test-deps.sh", file=sys.stderr)
    sys.exit(2)


class NoRetryRegistry(oras.provider.Registry):
    """The SDK's Registry without its retry-with-backoff, so errors surface at once."""

    do_request = oras.provider.Registry.do_request.__wrapped__


def main():
    host, target, src = sys.argv[1:4]
    client = NoRetryRegistry(hostname=host, insecure=True)
    client.session.request = functools.partial(client.session.request, timeout=120)
    os.chdir(src)  # the SDK wants paths relative to the working directory
    files = sorted(os.listdir("."))
    resp = client.push(target=f"{host}/{target}", files=files, quiet=True)
    if resp.status_code != 201:
        print(f"FAIL: push answered {resp.status_code}: {resp.text[:300]}", file=sys.stderr)
        sys.exit(1)
    print(resp.headers.get("Docker-Content-Digest"))


if __name__ == "__main__":
    main()
