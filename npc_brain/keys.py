"""`npc-brain keys DIR [NAME ...]`: CurveZMQ key pairs (pyzmq's certificate files), and the
helpers every socket that may leave loopback shares.

The daemon (or the broker) needs its own pair (`--curve-secret DIR/server.key_secret`) and a
folder holding the *public* keys of the peers it accepts (`--curve-clients`; the broker also
`--curve-workers`); each client or worker needs its own pair and the server's public key
(`--curve-client-secret`, `--curve-server-public`).
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path
from urllib.parse import urlparse

import zmq
import zmq.auth

MAKE_KEYS = "(make keys with `npc-brain keys`)"


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


def is_loopback(addr: str) -> bool:
    """True for tcp on 127.0.0.0/8, ::1 or localhost, and for ipc:// / inproc:// (never leave the host)."""
    url = urlparse(addr)
    if url.scheme in ("ipc", "inproc"):
        return True
    host = url.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def curve_refusal(what: str, addr: str, settings: dict[str, object], on: bool | None = None) -> str | None:
    """None when `addr` may be used with these CURVE settings (flag -> value), else why not.

    CURVE is on off loopback, or on loopback when `on` (default: when any setting is given);
    once on, every setting is needed."""
    on = (any(settings.values()) if on is None else on) or not is_loopback(addr)
    if not on or all(settings.values()):
        return None
    where = "" if is_loopback(addr) else " (not loopback)"
    return f"{what} {addr}{where} needs CurveZMQ: pass {' and '.join(settings)} {MAKE_KEYS}"


def load_client_curve(client_secret_file: Path, server_public_file: Path) -> tuple[bytes, bytes, bytes]:
    """(client public, client secret, server public) for `Client(curve=...)` or a worker."""
    pub, sec = zmq.auth.load_certificate(str(client_secret_file))
    if sec is None:
        raise SystemExit(f"error: {client_secret_file} holds no secret key (pass NAME.key_secret) {MAKE_KEYS}")
    server_pub, _ = zmq.auth.load_certificate(str(server_public_file))
    return pub, sec, server_pub


def add_client_curve_args(p) -> None:
    """The two flags a command that connects to a daemon or broker takes for CurveZMQ."""
    p.add_argument("--curve-client-secret", type=Path, help="with --connect: this client's secret key file "
                   "(the daemon must allow its public key); needed when the address is not loopback")
    p.add_argument("--curve-server-public", type=Path, help="with --connect: the daemon's public key file")


def client_curve_from_args(addr: str, client_secret: Path | None,
                           server_public: Path | None) -> tuple[bytes, bytes, bytes] | None:
    """CURVE keys for a client of `addr`, or None on loopback without keys. Raises SystemExit
    with what to pass when the keys are incomplete or the address leaves the host without them:
    the plain-text alternative is a client that waits for a reply that never comes."""
    why = curve_refusal("connecting to", addr, {"--curve-client-secret": client_secret,
                                                "--curve-server-public": server_public})
    if why:
        raise SystemExit(f"error: {why}")
    if client_secret is None:
        return None
    return load_client_curve(client_secret, server_public)


def curve_client(sock: zmq.Socket, curve: tuple[bytes, bytes, bytes]) -> None:
    """Make `sock` a CURVE client: (its public, its secret, the server's public)."""
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = curve


def curve_server(sock: zmq.Socket, secret_file: Path, domain: str) -> None:
    """Make `sock` a CURVE server; the authenticator checks its peers under ZAP `domain`."""
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if secret is None:
        raise SystemExit(f"error: {secret_file} holds no secret key (pass SERVER.key_secret) {MAKE_KEYS}")
    sock.zap_domain = domain.encode()
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True


def start_authenticator(ctx: zmq.Context, allowed: dict[str, Path]):
    """One ZAP handler for `ctx` (one per context): ZAP domain -> folder of allowed public keys.
    Start it before binding the sockets it guards; `.stop()` it after closing them."""
    from zmq.auth.thread import ThreadAuthenticator

    for folder in allowed.values():
        if not Path(folder).is_dir():
            raise SystemExit(f"error: {folder} is not a folder of allowed public keys {MAKE_KEYS}")
    auth = ThreadAuthenticator(ctx)
    auth.start()
    for domain, folder in allowed.items():
        auth.configure_curve(domain=domain, location=str(folder))
    return auth


if __name__ == "__main__":
    sys.exit(main())
