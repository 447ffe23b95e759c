#!/usr/bin/env python3
"""The oras SDK against a registry that asks for credentials.

Usage: oras_login.py REGISTRY_HOSTPORT, with LOGIN_USER and LOGIN_PASSWORD set.

A push before logging in is refused; after `login` the SDK follows the Bearer
challenge to the token endpoint, pushes a file and pulls it back identical.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oras_roundtrip import NoRetryRegistry  # noqa: E402


def main():
    host = sys.argv[1]
    user, password = os.environ["LOGIN_USER"], os.environ["LOGIN_PASSWORD"]
    target = f"{host}/team/oras-login:v1"
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        path = "weights.bin"
        data = os.urandom(300_000)
        with open(path, "wb") as f:
            f.write(data)
        anonymous = NoRetryRegistry(hostname=host, insecure=True)
        try:
            anonymous.push(target=target, files=[path], disable_path_validation=True)
        except Exception as e:  # the SDK raises on the refused upload
            print(f"refused before login: {type(e).__name__}")
        else:
            print("FAIL: pushed without credentials", file=sys.stderr)
            sys.exit(1)
        client = NoRetryRegistry(hostname=host, insecure=True)
        client.login(username=user, password=password, hostname=host, config_path=os.path.join(tmp, "config.json"))
        client.push(target=target, files=[path], disable_path_validation=True)
        out = os.path.join(tmp, "out")
        client.pull(target=target, outdir=out)
        with open(os.path.join(out, "weights.bin"), "rb") as f:
            if f.read() != data:
                print("FAIL: pulled bytes differ", file=sys.stderr)
                sys.exit(1)
    print("oras login: ok")


if __name__ == "__main__":
    main()
