#!/usr/bin/python3
"""A umockdev testbed driven over stdin, for the udev handler's tests.

Creates a UMockdev.Testbed (a fake /sys and /dev in a temporary directory)
and prints `ready <dir>`: processes started with LD_PRELOAD=libumockdev-preload.so.0
and UMOCKDEV_DIR=<dir> see its devices through libudev, and get its uevents
on their udev monitors. Then, one command per line, each answered with one
line `ok <monotonic seconds>` (the moment the last uevent was sent) or
`error <why>`:

  add <record file>   add the devices of a umockdev-record file, parents
                      first, with an "add" uevent for each
  remove <devpath>    "remove" uevents for the device and everything below
                      it (deepest first), then take them out of the testbed
  quit                stop (so does the end of stdin)
"""

import sys
import time

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402


def devpaths(record):
    """The devpaths (P: lines) of a umockdev-record file, in file order."""
    return [line[3:].strip() for line in record.splitlines() if line.startswith("P: ")]


def main():
    testbed = UMockdev.Testbed.new()
    present = []  # syspaths in the order they were added
    print("ready", testbed.get_root_dir(), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        try:
            if command == "add":
                with open(argument, encoding="utf-8") as f:
                    record = f.read()
                testbed.add_from_string(record)
                # umockdev-record lists a device before its parents: announce
                # parents first, as the kernel does.
                for devpath in sorted(devpaths(record), key=len):
                    syspath = "/sys" + devpath
                    if syspath not in present:
                        present.append(syspath)
                    testbed.uevent(syspath, "add")
            elif command == "remove":
                syspath = "/sys" + argument
                gone = [p for p in present if p == syspath or p.startswith(syspath + "/")]
                if not gone:
                    raise ValueError(f"{argument} is not in the testbed")
                gone.sort(key=len, reverse=True)
                for path in gone:
                    testbed.uevent(path, "remove")
                for path in gone:
                    testbed.remove_device(path)
                    present.remove(path)
            elif command == "quit":
                break
            else:
                raise ValueError(f"unknown command {command!r}")
            print("ok", time.monotonic(), flush=True)
        except Exception as error:  # reported to the test, which fails
            print("error", str(error).replace("\n", " "), flush=True)


if __name__ == "__main__":
    main()
