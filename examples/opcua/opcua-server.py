#!/usr/bin/env python3
"""A simulated OPC UA server, served by asyncua, for Ambit's demo and tests.

It serves a small address space (a boiler with a temperature that drifts
and a setpoint) under the application name, URI and type given on the
command line, and can:

- offer signed and encrypted endpoints (Basic256Sha256) beside the
  unsecured one, with a self-signed certificate made at start (--secure);
- act as a Local Discovery Server for others (--type discoveryServer; asyncua
  keeps every server that registers with it and names them in FindServers);
- register itself with such a server (--register-to URL);
- accept only one user name and password, no anonymous sessions
  (--user NAME:PASSWORD).

    # one server on 127.0.0.1:4841
    python3 examples/opcua/opcua-server.py --port 4841 --name "Boiler 1"

    # an LDS on 4840, and a server registered with it
    python3 examples/opcua/opcua-server.py --port 4840 --type discoveryServer --name LDS &
    python3 examples/opcua/opcua-server.py --port 4842 --name "Boiler 2" \
        --register-to opc.tcp://127.0.0.1:4840/

Prints "ready" on standard output once it serves; stops on SIGTERM/Ctrl-C.
Requires asyncua: see scripts/setup-pip.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import signal
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.user_managers import UserManager

TYPES = {
    "server": ua.ApplicationType.Server,
    "clientAndServer": ua.ApplicationType.ClientAndServer,
    "discoveryServer": ua.ApplicationType.DiscoveryServer,
}


class OneUser(UserManager):
    """Lets one user name and password in, and nobody else."""

    def __init__(self, name: str, password: str) -> None:
        self.name, self.password = name, password

    def get_user(self, iserver, username=None, password=None, certificate=None):
        if username == self.name and password == self.password:
            return User(role=UserRole.User, name=username)
        return None


def user(text: str) -> tuple[str, str]:
    """NAME:PASSWORD -> (name, password)."""
    name, colon, password = text.partition(":")
    if not name or not colon:
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {text!r}")
    return name, password


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A simulated OPC UA server (asyncua).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4841, help="TCP port (default 4841)")
    parser.add_argument("--name", default="Ambit Simulated Boiler", help="application name")
    parser.add_argument("--uri", help="application URI (default urn:ambit:simulator:<port>)")
    parser.add_argument("--product-uri", default="urn:ambit.dev:opcua-simulator", help="product URI")
    parser.add_argument(
        "--type", choices=sorted(TYPES), default="server", help="application type (default server)"
    )
    parser.add_argument(
        "--secure", action="store_true", help="also offer Basic256Sha256 Sign and SignAndEncrypt endpoints"
    )
    parser.add_argument("--register-to", metavar="URL", help="register with this discovery server")
    parser.add_argument(
        "--user", type=user, metavar="NAME:PASSWORD", help="accept only this user, no anonymous sessions"
    )
    parser.add_argument("--verbose", action="store_true", help="log asyncua's messages")
    return parser.parse_args()


async def make_certificate(server: Server, uri: str, host: str, folder: Path) -> None:
    """A self-signed application certificate for the secure endpoints."""
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from asyncua.crypto.cert_gen import setup_self_signed_certificate

    key, cert = folder / "key.pem", folder / "cert.der"
    await setup_self_signed_certificate(
        key, cert, uri, host, [ExtendedKeyUsageOID.SERVER_AUTH], {"commonName": "Ambit simulator"}
    )
    await server.load_certificate(str(cert))
    await server.load_private_key(str(key))


async def serve(args: argparse.Namespace) -> None:
    uri = args.uri or f"urn:ambit:simulator:{args.port}"
    url = f"opc.tcp://{args.host}:{args.port}/"
    server = Server(user_manager=OneUser(*args.user) if args.user else None)
    await server.init()
    server.set_endpoint(url)
    server.set_server_name(args.name)
    await server.set_build_info(args.product_uri, "Ambit", args.name, "1.2.3", "42", datetime.now())
    await server.set_application_uri(uri)
    server.product_uri = args.product_uri
    server.application_type = TYPES[args.type]
    policies = [ua.SecurityPolicyType.NoSecurity]
    if args.secure:
        policies += [
            ua.SecurityPolicyType.Basic256Sha256_Sign,
            ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
        ]
        # Loaded into memory, so the folder goes at once (a killed server
        # leaves nothing behind).
        with tempfile.TemporaryDirectory(prefix="ambit-opcua-sim-") as folder:
            await make_certificate(server, uri, args.host, Path(folder))
    server.set_security_policy(policies)
    if args.user:
        server.set_identity_tokens([ua.UserNameIdentityToken])

    namespace = await server.register_namespace("urn:ambit.dev:simulator")
    boiler = await server.nodes.objects.add_object(namespace, "Boiler")
    temperature = await boiler.add_variable(namespace, "Temperature", 20.0)
    setpoint = await boiler.add_variable(namespace, "Setpoint", 21.5)
    await setpoint.set_writable()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async with server:
        if args.register_to:
            await server.register_to_discovery(args.register_to, period=5)
        print("ready", flush=True)
        started = time.monotonic()
        while not stop.is_set():
            drift = 20.0 + 2.0 * math.sin((time.monotonic() - started) / 10.0)
            await temperature.write_value(round(drift, 2))
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR)
    try:
        asyncio.run(serve(args))
    except OSError as error:
        print(f"cannot serve on {args.host}:{args.port}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
