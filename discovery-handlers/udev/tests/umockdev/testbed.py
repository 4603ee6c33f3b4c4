#!/usr/bin/python3
"""A umockdev testbed driven over stdin, for the udev handler's tests.

Creates a UMockdev.Testbed (a fake /sys and /dev in a temporary directory)
and prints `ready <dir>`: processes started with LD_PRELOAD=libumockdev-preload.so.0
and UMOCKDEV_DIR=<dir> see its devices through libudev, and get its uevents
on their udev monitors. Then, one command per line, each answered with one
line `ok <monotonic seconds>` (the moment the last uevent was sent) or
`error <why>`:

  add <record file>   add the devices of a umockdev-record file, parents
                      first, each with its "add" uevent (umockdev sends it)
  remove <devpath>    "remove" uevents for the device and everything below
                      it (deepest first), then take them out of the testbed
  quit                stop (so does the end of stdin)
"""

import sys
import time

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402


def blocks(record):
    """(devpath, text) of each device of a umockdev-record text, in file order."""
    found = []
    for block in record.strip().split("\n\n"):
        first = block.strip().splitlines()[0]
        if not first.startswith("P: "):
            raise ValueError(f"a device description starts with {first!r}, not 'P: '")
        found.append((first[3:].strip(), block.strip() + "\n"))
    return found


def main():
    testbed = UMockdev.Testbed.new()
    present = []  # syspaths in the order they were added
    print("ready", testbed.get_root_dir(), flush=True)
    for line in sys.stdin:
        command, _, argument = line.strip().partition(" ")
        try:
            if command == "add":
                with open(argument, encoding="utf-8") as f:
                    # Comment lines are ours; umockdev does not take them.
                    record = "".join(l for l in f if not l.startswith("#"))
                # umockdev-record lists a device before its parents, and
                # umockdev sends each device's "add" uevent as it adds it:
                # add parents first, as the kernel does.
                for devpath, block in sorted(blocks(record), key=lambda b: len(b[0])):
                    testbed.add_from_string(block)
                    present.append("/sys" + devpath)
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
