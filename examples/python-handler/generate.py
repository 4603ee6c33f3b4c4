#!/usr/bin/env python3
"""Generates the Python stubs of Ambit's handler protocol from the one proto
file in the SDK crate (discovery-handlers/sdk/proto), so the Python and Rust
sides can never drift apart. The stubs are not committed.

Usage: python3 generate.py [OUT_DIR]     (default: ./generated)
"""

import pathlib
import sys

from grpc_tools import protoc

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "discovery-handlers" / "sdk" / "proto"
PROTO = "ambit/discovery/v1/discovery.proto"


def generate(out_dir: pathlib.Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    well_known = pathlib.Path(protoc.__file__).resolve().parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            PROTO,
        ]
    )
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


if __name__ == "__main__":
    generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "generated")
