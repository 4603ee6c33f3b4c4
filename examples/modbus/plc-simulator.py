#!/usr/bin/env python3
"""A simulated Modbus PLC, served by pymodbus, for Ambit's demo and tests.

It answers Read Device Identification (function 43 / MEI 14) with the
identity given on the command line, and serves holding and input registers
for each of its unit ids. It can also play a device without device
identification, or one that answers every request with an exception.

    # Modbus TCP on 127.0.0.1:5020, units 1 and 2
    python3 examples/modbus/plc-simulator.py --port 5020 --unit 1 --unit 2

    # Modbus RTU on one end of a pty pair (socat makes the pair)
    socat pty,raw,echo=0,link=/tmp/plc-a pty,raw,echo=0,link=/tmp/plc-b &
    python3 examples/modbus/plc-simulator.py --serial /tmp/plc-a --unit 7

Prints "ready" on standard output once it serves; stops on SIGTERM/Ctrl-C.
Requires pymodbus (and pyserial for --serial): see scripts/setup-pip.txt.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from pymodbus import FramerType
from pymodbus.constants import ExcCodes
from pymodbus.pdu import ExceptionResponse
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.pdu.mei_message import ReadDeviceInformationRequest
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

# Register 0 of the holding registers unless --holding says otherwise: the
# "model number" the example DeviceSet probes for.
DEFAULT_MODEL = 1234
REGISTERS = 100


def registers(text: str) -> tuple[int, list[int]]:
    """ADDRESS=V1[,V2...] -> (address, [values])."""
    address, _, values = text.partition("=")
    try:
        parsed = (int(address, 0), [int(v, 0) for v in values.split(",")])
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected ADDRESS=V1,V2,..., got {text!r}") from error
    if not values or not 0 <= parsed[0] < REGISTERS or parsed[0] + len(parsed[1]) > REGISTERS:
        raise argparse.ArgumentTypeError(f"registers must lie in 0..{REGISTERS - 1}: {text!r}")
    return parsed


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A simulated Modbus PLC (pymodbus).")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=5020, help="TCP port (default 5020)")
    where.add_argument("--serial", metavar="PATH", help="serve Modbus RTU on this serial port")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address (default 127.0.0.1)")
    parser.add_argument("--baudrate", type=int, default=19200)
    parser.add_argument("--parity", choices="NEO", default="E", help="N, E or O (default E)")
    parser.add_argument("--stopbits", type=int, choices=(1, 2), default=1)
    parser.add_argument(
        "--unit", type=int, action="append", help="a unit id to serve (repeat; default 1)"
    )
    parser.add_argument("--vendor", default="Ambit Simulations")
    parser.add_argument("--product-code", default="SIM-PLC-1")
    parser.add_argument("--revision", default="1.0")
    parser.add_argument("--product-name", default="Simulated PLC")
    parser.add_argument("--model-name", default="")
    parser.add_argument(
        "--no-identification",
        action="store_true",
        help="answer Read Device Identification with exception 1 (illegal function)",
    )
    parser.add_argument(
        "--exceptions",
        action="store_true",
        help="answer every request with exception 4 (server device failure)",
    )
    parser.add_argument(
        "--holding", type=registers, action="append", default=[], metavar="ADDR=V1,V2",
        help=f"holding register values (registers 0..{REGISTERS - 1}; default 0={DEFAULT_MODEL})",
    )
    parser.add_argument(
        "--input", type=registers, action="append", default=[], metavar="ADDR=V1,V2",
        help=f"input register values (registers 0..{REGISTERS - 1}; default all 0)",
    )
    return parser.parse_args()


def block(assignments: list[tuple[int, list[int]]], default: dict[int, int]) -> list[int]:
    values = [0] * REGISTERS
    for address, value in default.items():
        values[address] = value
    for address, given in assignments:
        values[address : address + len(given)] = given
    return values


def device(unit: int, holding: list[int], inputs: list[int]) -> SimDevice:
    # Separate blocks (coils, discrete inputs, holding, input registers), as
    # most PLCs have them; coils and discrete inputs are unused.
    bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
    return SimDevice(
        id=unit,
        simdata=(
            bits,
            list(bits),
            [SimData(0, values=holding, datatype=DataType.REGISTERS)],
            [SimData(0, values=inputs, datatype=DataType.REGISTERS)],
        ),
    )


def refuse(pdu, code: ExcCodes):
    """Make the request `pdu` answer with exception `code`."""

    async def update(_context, _device_id):
        return ExceptionResponse(pdu.function_code, code)

    pdu.datastore_update = update
    return pdu


async def serve(args: argparse.Namespace) -> None:
    units = sorted(set(args.unit or [1]))
    holding = block(args.holding, {} if args.holding else {0: DEFAULT_MODEL})
    inputs = block(args.input, {})
    devices = [device(unit, holding, inputs) for unit in units]
    identity = ModbusDeviceIdentification(
        info_name={
            "VendorName": args.vendor,
            "ProductCode": args.product_code,
            "MajorMinorRevision": args.revision,
            "ProductName": args.product_name,
            "ModelName": args.model_name,
        }
    )

    def on_pdu(sending: bool, pdu):
        if sending:
            return pdu
        if pdu.dev_id not in units:
            # No such unit: a serial bus stays silent; a TCP device answers
            # as a gateway whose target does not respond.
            return None if args.serial else refuse(pdu, ExcCodes.GATEWAY_NO_RESPONSE)
        if args.exceptions:
            return refuse(pdu, ExcCodes.DEVICE_FAILURE)
        if args.no_identification and isinstance(pdu, ReadDeviceInformationRequest):
            return refuse(pdu, ExcCodes.ILLEGAL_FUNCTION)
        return pdu

    if args.serial:
        server = ModbusSerialServer(
            devices,
            framer=FramerType.RTU,
            identity=identity,
            port=args.serial,
            baudrate=args.baudrate,
            parity=args.parity,
            stopbits=args.stopbits,
            trace_pdu=on_pdu,
        )
    else:
        server = ModbusTcpServer(
            devices,
            identity=identity,
            address=(args.host, args.port),
            trace_pdu=on_pdu,
        )
    await server.serve_forever(background=True)
    print("ready", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.shutdown()


def main() -> int:
    asyncio.run(serve(parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
