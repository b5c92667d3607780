"""`npc-brain keys DIR [NAME ...]`: CurveZMQ key pairs (pyzmq's certificate files).

The daemon needs its own pair (`--curve-secret DIR/server.key_secret`) and a folder
holding the *public* keys of the clients it accepts (`--curve-clients`); each
client needs its pair and the server's public key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import zmq.auth


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="npc-brain keys")
    p.add_argument("dir", type=Path)
    p.add_argument("names", nargs="*", default=["server", "client"])
    a = p.parse_args(argv)
    a.dir.mkdir(parents=True, exist_ok=True)
    for name in a.names:
        public, secret = zmq.auth.create_certificates(str(a.dir), name)
        print(f"{name}: public {public}  secret {secret}")
    return 0


def load_client_curve(client_secret_file: Path, server_public_file: Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for `Client(curve=...)`."""
    pub, sec = zmq.auth.load_certificate(str(client_secret_file))
    server_pub, _ = zmq.auth.load_certificate(str(server_public_file))
    return pub, sec, server_pub


if __name__ == "__main__":
    sys.exit(main())
