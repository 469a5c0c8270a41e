"""Extraction throughput: genrec's Beam pipeline (DirectRunner, N workers) vs a one-process pyarrow
reference doing the same work (`extract_sequences_local`: same readers, shards, splits, outputs).

    python benchmarks/extract.py --sizes 1000000 10000000 --workers 2
    python benchmarks/extract.py --sizes 3000000 --format csv   # text read in 64 MB chunks

Each run happens in a fresh subprocess, so peak RSS is that run's own (the largest single process:
Beam's driver or one of its workers). Ends with one JSON line per size:
{"events": N, "format": ..., "beam_ev_s": ..., "pyarrow_ev_s": ..., "ratio": ..., "peak_rss_mb": ...}
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

DAY = 86_400
END = 1_767_225_600  # 2026-01-01


def generate(path: str, events: int, seed: int = 0, row_group: int = 250_000) -> None:
    """Canonical events (.parquet or .csv by the path's extension): Zipf-ish items, ~60 events per
    user, 90 days, 3 event types."""
    rng = np.random.default_rng(seed)
    users = max(1, events // 60)
    items = max(100, events // 100)
    writer = None
    for start in range(0, events, row_group):
        n = min(row_group, events - start)
        user = rng.integers(0, users, n)
        item = np.minimum(rng.zipf(1.3, n), items) - 1
        table = pa.table({
            "user_id": pa.array(np.char.add("u", user.astype(str))),
            "item_id": pa.array(np.char.add("t", item.astype(str))),
            "timestamp": pa.array(END - rng.integers(0, 90 * DAY, n), pa.int64()),
            "event_type": pa.array(np.array(["play", "like", "search"])[rng.choice(3, n, p=[0.8, 0.1, 0.1])]),
        })
        if path.endswith(".csv"):
            writer = writer or pcsv.CSVWriter(path, table.schema)
        else:
            writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def _run(mode: str, data_dir: str, out_dir: str, workers: int) -> float:
    """Run one extraction in a child process; returns its wall time."""
    code = (
        "import sys, time\n"
        "from genrec.sequences import ExtractConfig, extract_sequences, extract_sequences_local\n"
        f"cfg = ExtractConfig(now={END})\n"
        "t = time.perf_counter()\n"
        + (f"extract_sequences({data_dir!r}, {out_dir!r}, cfg, beam_args=['--direct_num_workers={workers}', "
           "'--direct_running_mode=multi_processing'])\n" if mode == "beam"
           else f"extract_sequences_local({data_dir!r}, {out_dir!r}, cfg)\n")
        + "print('WALL', time.perf_counter() - t)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return float([line for line in proc.stdout.splitlines() if line.startswith("WALL")][-1].split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = os.path.join(tmp, "data")
            os.makedirs(data_dir)
            generate(os.path.join(data_dir, f"events.{args.format}"), size)
            rss_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            reference = _run("pyarrow", data_dir, os.path.join(tmp, "ref"), args.workers)
            beam = _run("beam", data_dir, os.path.join(tmp, "beam"), args.workers)
            peak = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rss_before) / 1024
            row = {"events": size, "format": args.format, "beam_ev_s": round(size / beam), "pyarrow_ev_s": round(size / reference),
                   "ratio": round(reference / beam, 3), "peak_rss_mb": round(peak)}
            print(f"{size:>11,} events  beam {beam:7.1f} s ({size / beam:,.0f} ev/s, {args.workers} workers)  "
                  f"pyarrow {reference:7.1f} s ({size / reference:,.0f} ev/s)  ratio {reference / beam:.2f}  "
                  f"peak RSS {peak:,.0f} MB", flush=True)
            rows.append(row)
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
