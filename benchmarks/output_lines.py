"""Cost of keeping each lane's last output line for the progress board (``OutputLines``).

Run: python benchmarks/output_lines.py [--megabytes 32] [--repeat 9]

Feeds the same output through ``LaneOutput`` (log file, secret masking, no echo) with and without
an ``OutputLines``, interleaving the two variants, in two shapes: a chatty command (one write per
80-byte line) and a bulk one (64 KiB writes). Prints the median, min and max time of each, the
ratio of "with" to "without" (the floor, measured in the same run), and the cost of one read of
the last line (what the board does twice a second per lane).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from spine.base.redact import Redactor
from spine.lane.runtime import LaneOutput, OutputLines


def feed(folder: Path, chunks: list[bytes], lines: OutputLines | None) -> float:
    out = LaneOutput(folder / "out.log", "lane", "none", Redactor(["a-secret-value-123"]), lines)
    start = time.perf_counter()
    for chunk in chunks:
        out("stdout", chunk)
    elapsed = time.perf_counter() - start
    out.close()
    (folder / "out.log").unlink()
    return elapsed


def summary(times: list[float]) -> str:
    return f"{statistics.median(times) * 1000:8.1f} ms  (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    total = args.megabytes << 20
    line = b"compiling module 1234 of 9999: src/some/where/file.rs ........................\n"
    shapes = {
        "80-byte writes": [line] * (total // len(line)),
        "64 KiB writes": [line * (65536 // len(line))] * (total // 65536),
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, chunks in shapes.items():
            without: list[float] = []
            with_lines: list[float] = []
            for _ in range(args.repeat):  # interleaved, so drift hits both alike
                without.append(feed(folder, chunks, None))
                with_lines.append(feed(folder, chunks, OutputLines()))
            ratio = statistics.median(with_lines) / statistics.median(without)
            print(f"{name:>15}, {args.megabytes} MiB:")
            print(f"  without last line  {summary(without)}")
            print(f"  with last line     {summary(with_lines)}   ratio {ratio:.2f}")
        lines = OutputLines()
        lines.feed("lane", line * 100)
        reads = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            for _ in range(1000):
                lines.get("lane")
            reads.append((time.perf_counter() - start) / 1000)
        print(
            f"one read of the last line: {statistics.median(reads) * 1e6:.1f} us (median of {args.repeat} x 1000)"
        )


if __name__ == "__main__":
    main()
