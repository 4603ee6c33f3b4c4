#!/usr/bin/env python3
"""Announces an ONVIF camera with WS-Discovery (the PyPI `WSDiscovery`
package): a Hello when it starts, ProbeMatches to every Probe, a Bye when
it stops (SIGTERM, SIGINT or stdin closed).

It announces only: the camera's SOAP services are served elsewhere (by the
`onvif-server` crate in the tests, or any real camera's address). Used by
discovery-handlers/onvif's tests, inside a network namespace, since the
package ignores loopback interfaces.

    python3 wsd-publisher.py --uuid 3fa1fe68-b915-4053-a3e1-ac15a21f5f91 \
        --xaddr http://10.0.0.2:8080/onvif/device_service \
        --scope onvif://www.onvif.org/name/gate

Prints "ready" once the Hello is on its way.
"""

import argparse
import signal
import sys
import threading
import time

from wsdiscovery import QName, Scope
from wsdiscovery.publishing import ThreadedWSPublishing

NETWORK_WSDL = "http://www.onvif.org/ver10/network/wsdl"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uuid", required=True, help="the camera's UUID (its stable identity)")
    parser.add_argument("--xaddr", action="append", required=True, help="device service URL")
    parser.add_argument("--scope", action="append", default=[], help="a scope URI")
    args = parser.parse_args()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    publisher = ThreadedWSPublishing(uuid_=f"urn:uuid:{args.uuid}")
    publisher.start()
    publisher.publishService(
        types=[QName(NETWORK_WSDL, "NetworkVideoTransmitter", "dn")],
        scopes=[Scope(s) for s in args.scope],
        xAddrs=args.xaddr,
    )
    print("ready", flush=True)
    stop.wait()
    # Publishing.clearLocalServices sends the Bye; the threaded stop() alone
    # would not. Give the Bye's repeats time to leave.
    publisher.clearLocalServices()
    time.sleep(2)
    publisher.stop()


if __name__ == "__main__":
    main()
