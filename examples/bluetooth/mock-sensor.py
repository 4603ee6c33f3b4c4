#!/usr/bin/env python3
"""A mocked Bluetooth LE sensor: BlueZ as python-dbusmock's bluez5 template
on a private D-Bus bus, with one adapter (hci0) and sensors advertising.

Run it through mock-sensor.sh, which picks the Python that has dbusmock.
It prints the bus address on standard output (one line, then nothing else),
keeps the sensors advertising until it is stopped (Ctrl-C or SIGTERM), and
then stops the bus:

    examples/bluetooth/mock-sensor.sh > /tmp/ble-bus &
    export DBUS_SYSTEM_BUS_ADDRESS=$(head -1 /tmp/ble-bus)   # once it is there
    ambit discover -f examples/bluetooth/thermometers.yaml

Each sensor is named Ambit-Thermo-NN, advertises the Environmental Sensing
service (0x181A) and manufacturer data for company 0xFFFF (reserved for
tests), and "advertises" every second: its RSSI jitters a little (which
must not make a new device set) and its manufacturer data is sent again.
"""

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import dbus

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""

DEVICE_IFACE = "org.bluez.Device1"
ENVIRONMENTAL_SENSING = "0000181a-0000-1000-8000-00805f9b34fb"
TEST_COMPANY = 0xFFFF


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=1, help="how many sensors (default 1)")
    parser.add_argument(
        "--socket",
        help="path of the bus socket (default: in a new temporary directory)",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between advertisements (default 1)"
    )
    return parser.parse_args()


def start_bus(socket_path, workdir):
    config = os.path.join(workdir, "bus.conf")
    with open(config, "w", encoding="utf-8") as f:
        f.write(BUS_CONFIG.format(socket=socket_path))
    daemon = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile", "--print-address=1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    address = daemon.stdout.readline().strip()
    if not address.startswith("unix:"):
        daemon.kill()
        sys.exit(f"dbus-daemon did not start (printed {address!r})")
    return daemon, address


def start_bluez(address):
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
    mock = subprocess.Popen(
        [sys.executable, "-m", "dbusmock", "--system", "--template", "bluez5"],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    bus = dbus.bus.BusConnection(address)
    deadline = time.monotonic() + 20
    while not bus.name_has_owner("org.bluez"):
        if mock.poll() is not None or time.monotonic() > deadline:
            mock.kill()
            sys.exit("python-dbusmock did not start BlueZ's mock (run `make setup`)")
        time.sleep(0.05)
    return mock, bus


def advertise(device, rssi, data):
    device.UpdateProperties(
        DEVICE_IFACE,
        {
            "RSSI": dbus.Int16(rssi),
            "ManufacturerData": dbus.Dictionary(
                {dbus.UInt16(TEST_COMPANY): dbus.Array(data, signature="y")}, signature="qv"
            ),
        },
        dbus_interface="org.freedesktop.DBus.Mock",
    )


def main():
    args = parse_args()
    workdir = tempfile.mkdtemp(prefix="ambit-ble-")
    socket_path = args.socket or os.path.join(workdir, "system_bus_socket")
    children = []

    def stop(*_):
        for child in reversed(children):
            child.terminate()
        for child in reversed(children):
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        if args.socket and os.path.exists(args.socket):
            os.unlink(args.socket)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    daemon, address = start_bus(socket_path, workdir)
    children.append(daemon)
    mock, bus = start_bluez(address)
    children.append(mock)

    bluez = dbus.Interface(bus.get_object("org.bluez", "/"), "org.bluez.Mock")
    bluez.AddAdapter("hci0", "ambit-demo")
    sensors = []
    for number in range(1, args.sensors + 1):
        name = f"Ambit-Thermo-{number:02d}"
        path = bluez.AddDevice("hci0", f"AA:BB:CC:00:00:{number:02X}", name)
        device = bus.get_object("org.bluez", path)
        device.UpdateProperties(
            DEVICE_IFACE,
            {"UUIDs": dbus.Array([ENVIRONMENTAL_SENSING], signature="s")},
            dbus_interface="org.freedesktop.DBus.Mock",
        )
        # A fixed reading: firmware 1, 21.5 degrees (0x00d7 tenths).
        data = [0x01, 0x00, 0xD7]
        base_rssi = -52 if number % 2 else -70  # a strong and a medium one, clear of the thresholds
        advertise(device, base_rssi, data)
        sensors.append((device, base_rssi, data))

    print(address, flush=True)
    print(
        f"mocked BlueZ with {len(sensors)} sensor(s) on hci0; use it with\n"
        f"  export DBUS_SYSTEM_BUS_ADDRESS='{address}'\n"
        "  ambit discover -f examples/bluetooth/thermometers.yaml\n"
        "Ctrl-C stops it.",
        file=sys.stderr,
        flush=True,
    )
    while True:
        time.sleep(args.interval)
        for device, base_rssi, data in sensors:
            advertise(device, base_rssi + random.randint(-2, 2), data)


if __name__ == "__main__":
    main()
