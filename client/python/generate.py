#!/usr/bin/env python3
"""Regenerates the protobuf and gRPC stubs in src/vss/v1/ from proto/.

    python client/python/generate.py          # rewrite the stubs
    python client/python/generate.py --check  # exit 1 if they differ

Needs grpcio-tools (the version pinned in pyproject.toml's `test` extra:
the generated code names the protobuf and grpcio versions it was made
with). The stubs are generated with proto/ as the include root, so they
import each other as `vss.v1.<name>_pb2`: inside this package (import
name `vss`) that is `src/vss/v1/`, and no import needs rewriting.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
OUT = HERE / "src" / "vss" / "v1"

# (proto file, with gRPC service stubs)
PROTOS = [("vss/v1/vss.proto", True), ("vss/v1/cluster.proto", False)]


def generate(into: Path) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    for proto, services in PROTOS:
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={into}",
            f"--pyi_out={into}",
        ]
        if services:
            args.append(f"--grpc_python_out={into}")
        args.append(str(PROTO_ROOT / proto))
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the committed stubs instead of writing them",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp))
        made = {p.name: p.read_text() for p in (Path(tmp) / "vss" / "v1").iterdir()}
    if not args.check:
        for name, text in made.items():
            (OUT / name).write_text(text)
        print(f"wrote {len(made)} files to {OUT}")
        return 0
    held = {
        p.name: p.read_text()
        for p in OUT.iterdir()
        if p.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    }
    stale = False
    for name in sorted(made.keys() | held.keys()):
        if made.get(name) == held.get(name):
            continue
        stale = True
        diff = difflib.unified_diff(
            held.get(name, "").splitlines(keepends=True),
            made.get(name, "").splitlines(keepends=True),
            f"committed/{name}",
            f"generated/{name}",
        )
        sys.stdout.writelines(list(diff)[:40])
    if stale:
        print(
            "stubs in client/python/src/vss/v1 are out of date with proto/: "
            "run python client/python/generate.py",
            file=sys.stderr,
        )
        return 1
    print(f"stubs up to date ({len(made)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
