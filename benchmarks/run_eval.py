"""Read and score a run of MS MARCO dev's shape (6,980 queries x 1,000 documents = 6.98M lines) the way
`harness evaluate --qrels QRELS --run RUN --output DIR` does, and print the seconds and the peak RSS.

    python benchmarks/run_eval.py [--queries 6980] [--depth 1000] [--keep DIR]

The run is synthetic (random MS MARCO-sized document ids, descending scores, tag "synthetic"); the qrels give
each query one or two relevant documents, one of them in the run at a random rank for 60% of the queries (about
MS MARCO dev's MRR@10 range for a weak model). Writing the files is not timed. Target (issue 11): <= 60 s and
<= 2 GB peak RSS on the 2-core development VM.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

COLLECTION = 8_841_823


def write_files(folder: Path, *, queries: int, depth: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    qids = np.sort(rng.choice(1_200_000, queries, replace=False))
    ranks = list(range(1, depth + 1))
    run, qrels = folder / "run.trec", folder / "qrels.tsv"
    with open(run, "w", encoding="ascii") as out_run, open(qrels, "w", encoding="ascii") as out_qrels:
        out_qrels.write("query-id\tcorpus-id\tscore\n")
        for qid in qids.tolist():
            docs = rng.choice(COLLECTION, depth, replace=False).tolist()
            scores = (np.sort(rng.random(depth))[::-1] * 100).tolist()
            out_run.write("".join(f"{qid} Q0 {d} {r} {s:.6f} synthetic\n" for d, r, s in zip(docs, ranks, scores)))
            relevant = [docs[int(rng.integers(depth))]] if rng.random() < 0.6 else []
            if not relevant or rng.random() < 0.1:  # a relevant document the run missed
                relevant.append(int(rng.integers(COLLECTION)))
            for docid in dict.fromkeys(relevant):
                out_qrels.write(f"{qid}\t{docid}\t1\n")
    return run, qrels


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=6980)
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="write the files and the record here (default: a temp folder)")
    args = parser.parse_args()

    from harness.scoring.external import evaluate_runs
    from harness.vocabulary.timing import cpu_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        run, qrels = write_files(folder, queries=args.queries, depth=args.depth)
        print(f"wrote {run.stat().st_size / 2**20:.0f} MiB run ({args.queries:,} x {args.depth:,} lines) and "
              f"qrels in {time.perf_counter() - start:.1f} s (not timed below)")
        rss_before = peak_rss_mb()
        start, cpu = time.perf_counter(), time.process_time()
        [result] = evaluate_runs([run], qrels=qrels, output=folder / "records")  # what `harness evaluate` does
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        metrics = ", ".join(f"{m} {v:.4f}" for m, v in result.record.metrics.items())
        print(f"harness evaluate: {seconds:.1f} s ({cpu:.1f} s CPU), peak RSS {peak_rss_mb():.0f} MB "
              f"(before reading: {rss_before:.0f} MB); {metrics}")
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"CPU: {cpu_model()}, {os.cpu_count()} cores, load average {load}; record: {result.path}")


if __name__ == "__main__":
    main()
