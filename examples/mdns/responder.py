"""A simulated DNS-SD responder for Ambit's demo and the mdns handler's
tests: python-zeroconf (PyPI `zeroconf`, pinned and installed into a venv in
~/.cache/ambit/venv by tests/src/peers/mdns.rs, which `make setup` runs),
driven by JSON lines on stdin; the arguments are the addresses of the
interfaces to answer on.

  ~/.cache/ambit/venv/zeroconf-0.154.0/bin/python examples/mdns/responder.py 10.78.0.3

  {"op": "register", "name": "Office", "type": "_ipp._tcp", "port": 631,
   "txt": {"ty": "Laser"}, "addresses": ["192.0.2.1"], "ttl": 120, "fast": false}
  {"op": "update", ...same fields...}      new TXT / port / addresses, announced
  {"op": "unregister", "name": "Office", "type": "_ipp._tcp"}   goodbye (TTL 0)
  {"op": "quit"}                           goodbyes for all, then exit

Each command answers "ok <CLOCK_MONOTONIC ns>" once done ("ready" at start).
Killing the process sends no goodbye: the records then expire by their TTL.
"""

import json
import sys
import time

from zeroconf import IPVersion, ServiceInfo, Zeroconf


def info(cmd):
    ty = cmd["type"].rstrip(".")
    if not ty.endswith(".local"):
        ty += ".local"
    ty += "."
    name = f'{cmd["name"]}.{ty}'
    ttl = int(cmd.get("ttl", 120))
    return ServiceInfo(
        ty,
        name,
        port=int(cmd.get("port", 80)),
        properties={k: (None if v is None else str(v)) for k, v in cmd.get("txt", {}).items()},
        server=cmd.get("host", "ambit-test-host.local."),
        host_ttl=ttl,
        other_ttl=ttl,
        parsed_addresses=cmd.get("addresses", []),
    )


def main():
    interfaces = sys.argv[1:]
    zc = Zeroconf(interfaces=interfaces, ip_version=IPVersion.All)
    services = {}
    print("ready", time.monotonic_ns(), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            zc.unregister_all_services()
            zc.close()
            print("ok", time.monotonic_ns(), flush=True)
            return
        service = info(cmd)
        key = service.name.lower()
        if op == "register":
            zc.register_service(
                service, cooperating_responders=bool(cmd.get("fast", False))
            )
            services[key] = service
        elif op == "update":
            zc.update_service(service)
            services[key] = service
        elif op == "unregister":
            zc.unregister_service(services.pop(key, service))
        else:
            print("error unknown op", op, flush=True)
            continue
        print("ok", time.monotonic_ns(), flush=True)


if __name__ == "__main__":
    main()
