#!/usr/bin/env python3
"""An Ambit discovery handler written in Python: the protocol seen from a
language other than Rust, with nothing but grpcio.

It serves `ambit.discovery.v1.DiscoveryHandler` on <socket-dir>/<name>.sock,
registers with the agent on <socket-dir>/registration.sock, and registers
again whenever that registration ends (the agent restarted). For each
DeviceSet it reports the devices its details list:

    details: {"devices": ["a", {"id": "b", "properties": {"K": "v"}}], "shared": false}

Run `python3 generate.py` first (or pass --stubs DIR to use stubs generated
elsewhere).
"""

import argparse
import asyncio
import json
import logging
import os
import pathlib
import random
import signal
import sys

import grpc

HERE = pathlib.Path(__file__).resolve().parent
PROTOCOL_VERSION = "v1"
# gRPC's C core sends the socket path (percent-encoded) as :authority on a
# unix socket unless told otherwise, and many HTTP/2 servers refuse that.
# The agent copes, but the protocol asks clients to send `localhost`.
DEFAULT_AUTHORITY = "localhost"

log = logging.getLogger("python-handler")


class InvalidDetails(Exception):
    """The DeviceSet's details are wrong; the message is for its author."""


def parse_devices(details_json, pb):
    """Turns a DeviceSet's details into the device list, or raises
    InvalidDetails naming the bad field."""
    try:
        details = json.loads(details_json or "{}")
    except json.JSONDecodeError as error:
        raise InvalidDetails(f"details are not valid JSON: {error}") from None
    if not isinstance(details, dict):
        raise InvalidDetails("details must be a JSON object")
    unknown = sorted(set(details) - {"devices", "shared"})
    if unknown:
        raise InvalidDetails(f"unknown field `{unknown[0]}`, expected `devices` or `shared`")
    shared = details.get("shared", False)
    if not isinstance(shared, bool):
        raise InvalidDetails("shared: expected a boolean")
    items = details.get("devices")
    if not isinstance(items, list):
        raise InvalidDetails("devices: expected a list of ids or {id, properties} objects")
    devices, seen = [], set()
    for index, item in enumerate(items):
        where = f"devices[{index}]"
        if isinstance(item, str):
            item = {"id": item}
        if not isinstance(item, dict):
            raise InvalidDetails(f"{where}: expected a string or an object")
        device_id = item.get("id")
        if not isinstance(device_id, str) or not device_id:
            raise InvalidDetails(f"{where}.id: expected a non-empty string")
        if device_id in seen:
            raise InvalidDetails(f"{where}.id: {device_id!r} is listed twice")
        seen.add(device_id)
        properties = item.get("properties", {})
        if not isinstance(properties, dict) or not all(
            isinstance(value, str) for value in properties.values()
        ):
            raise InvalidDetails(f"{where}.properties: expected an object of strings")
        properties = dict(properties, PYTHON_HANDLER_ID=device_id)
        devices.append(pb.Device(id=device_id, shared=shared, properties=properties))
    return devices


def make_servicer(pb, pb_grpc):
    class Handler(pb_grpc.DiscoveryHandlerServicer):
        async def Discover(self, request, context):
            # request.properties may hold secrets: never log them.
            try:
                devices = parse_devices(request.details, pb)
            except InvalidDetails as error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            log.info("discover on node %s: %d devices", request.node_name, len(devices))
            # The complete set at once; it never changes, so hold the stream
            # open until the agent cancels it.
            yield pb.DiscoverResponse(devices=devices)
            await asyncio.Event().wait()

    return Handler()


async def register_forever(pb, pb_grpc, name, endpoint, agent_socket, authority):
    """Registers, and registers again whenever the registration ends, with a
    jittered backoff from 100 ms doubling to 1 s."""
    options = [("grpc.default_authority", authority)] if authority else []
    backoff = 0.1
    while True:
        try:
            async with grpc.aio.insecure_channel(f"unix:{agent_socket}", options=options) as channel:
                stub = pb_grpc.RegistrationStub(channel)
                call = stub.Register(pb.RegisterRequest(name=name, endpoint=endpoint, version=PROTOCOL_VERSION))
                async for accepted in call:
                    log.info("registered with the agent on node %s", accepted.node_name)
                    backoff = 0.1
            log.info("registration ended; registering again")
        except grpc.aio.AioRpcError as error:
            log.warning("registration failed: %s %s", error.code().name, error.details())
        await asyncio.sleep(random.uniform(backoff / 2, backoff))
        backoff = min(backoff * 2, 1.0)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--socket-dir", default=os.environ.get("AMBIT_SOCKET_DIR", "/var/lib/ambit"))
    parser.add_argument("--name", default=os.environ.get("AMBIT_HANDLER_NAME", "python-echo"))
    parser.add_argument("--stubs", default=os.environ.get("AMBIT_PYTHON_STUBS", str(HERE / "generated")))
    parser.add_argument(
        "--authority",
        default=DEFAULT_AUTHORITY,
        help="the :authority sent to the agent; empty for grpcio's default (the socket path)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    sys.path.insert(0, args.stubs)
    try:
        from ambit.discovery.v1 import discovery_pb2 as pb
        from ambit.discovery.v1 import discovery_pb2_grpc as pb_grpc
    except ImportError as error:
        raise SystemExit(f"protocol stubs not found in {args.stubs} ({error}); run generate.py first")

    socket_dir = pathlib.Path(args.socket_dir).resolve()
    socket_dir.mkdir(parents=True, exist_ok=True)
    endpoint = socket_dir / f"{args.name}.sock"
    endpoint.unlink(missing_ok=True)

    server = grpc.aio.server()
    pb_grpc.add_DiscoveryHandlerServicer_to_server(make_servicer(pb, pb_grpc), server)
    server.add_insecure_port(f"unix:{endpoint}")
    await server.start()
    log.info("serving %s on %s", args.name, endpoint)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    registration = asyncio.create_task(
        register_forever(pb, pb_grpc, args.name, str(endpoint), str(socket_dir / "registration.sock"), args.authority)
    )
    await stop.wait()
    registration.cancel()
    await server.stop(grace=1)
    endpoint.unlink(missing_ok=True)


if __name__ == "__main__":
    asyncio.run(main())
