"""Run every benchmark: ``python -m bench [--quick] [NAME ...]`` (``make bench``).

Each benchmark runs in a process of its own (memory and CPU figures stay its own), its output
streamed as it comes; the targets are gathered at the end. The exit status is non-zero only
when a benchmark crashed: a target missed is a figure to read, not an error.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time

from . import BENCHMARKS


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks named (all by default) and print their targets together."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small N: seconds, not minutes")
    parser.add_argument("--list", action="store_true", help="print the benchmarks' names")
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; the benchmarks: {', '.join(BENCHMARKS)}")
    targets: list[str] = []
    crashed: list[str] = []
    started = time.monotonic()
    for name in args.names or BENCHMARKS:
        if importlib.util.find_spec(f"bench.{name}") is None:
            line = f"SKIP: {name}: bench/{name}.py is not in this checkout"
            print(line, flush=True)
            targets.append(line)
            continue
        command = [sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith(("TARGET ", "SKIP: ")):
                targets.append(line.rstrip())
        if process.wait() != 0:
            crashed.append(name)
        print(flush=True)
    print(f"== targets ({time.monotonic() - started:.0f} s) ==")
    print("\n".join(targets))
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
    return 1 if crashed else 0


if __name__ == "__main__":
    raise SystemExit(main())
