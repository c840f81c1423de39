"""The speed gate of `harness check` (suite `baseline.speed`), measured: false alarms and detection.

One process, the bundled all-MiniLM-L6-v2 on NovelEval (420 passages, 21 queries), CPU. Every run is a full
`harness.pipeline.runner.run_one` with an in-memory embedding store, so the corpus is always encoded (never read from
the cache) and the record keeps its per-batch encode times and per-call query latencies. The first run of the fast
engine is the baseline; then, interleaved, N reruns of the same unchanged code, the fast engine with oneDNN off
(`cpu_kernels="aten"`, a lost fast path) and the sentence-transformers engine. Each is checked against the
baseline by `harness.analysis.check.speed_results`, exactly as `harness check` does.

    PYTHONPATH=. python benchmarks/speed_gate.py                    # N = 10, max_slowdown 0.10
    PYTHONPATH=. python benchmarks/speed_gate.py --reruns 20 --json out/speed_gate.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.analysis.check import speed_results  # noqa: E402
from harness.encode.engines import FastEngine  # noqa: E402
from harness.encode.models import Encoder  # noqa: E402
from harness.encode.store import MemoryStore  # noqa: E402
from harness.input.datasets import load_dataset  # noqa: E402
from harness.input.suite import SpeedGate, parse_suite  # noqa: E402
from harness.pipeline.runner import RunOptions, run_one  # noqa: E402
from harness.scoring.scored import ScoredRun  # noqa: E402
from harness.vocabulary.statistics import StatsOptions  # noqa: E402

SUITE = {
    "name": "speed-gate",
    "datasets": [{"name": "noveleval", "path": str(REPO / "data" / "noveleval")}],
    "encoders": [{"name": "minilm", "model": "bundled:all-MiniLM-L6-v2", "device": "cpu", "max_seq_length": 256}],
    "metrics": ["nDCG@10"],
    "top_k": 100,
}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reruns", type=int, default=10, help="reruns of the unchanged fast engine (default 10)")
    parser.add_argument("--max-slowdown", type=float, default=0.10)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's; 1 is steadier on an oversubscribed host)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    suite = parse_suite(SUITE, source=REPO / "suites" / "speed-gate.yaml")
    dataset = load_dataset(suite.datasets[0])
    fast = Encoder(suite.encoders[0])
    aten = Encoder.from_model(fast.model, suite.encoders[0])
    aten.engine = FastEngine(fast.model, precision="fp32", device="cpu", batch_size=aten.spec.batch_size,
                             cpu_kernels="aten")
    st = Encoder.from_model(fast.model, suite.encoders[0].model_copy(update={"engine": "sentence-transformers"}))
    options = RunOptions(progress=False)
    gate = SpeedGate(max_slowdown=args.max_slowdown, alpha=args.alpha)

    def run(label: str, encoder: Encoder) -> ScoredRun:
        started = time.perf_counter()
        store = MemoryStore(len(dataset.corpus), chunk_rows=options.chunk_rows)
        result = run_one(suite, dataset, encoder, options, store=store)
        perf = result.record.performance
        print(f"  {label}: {perf.throughput.passages_per_s:.1f} passages/s, query p99 {perf.query_latency.p99:.2f} ms, "
              f"{sum(len(c.pieces) for c in perf.corpus_chunk_seconds)} timed pieces "
              f"({time.perf_counter() - started:.0f} s, load average {os.getloadavg()[0]:.1f})", file=sys.stderr)
        return result.named(label)

    warm = dataset.corpus.texts(0, 64)
    fast.encode_documents(warm)  # warm every engine once, outside the timed runs
    aten.encode_documents(warm)
    st.encode_documents(warm)
    baseline = run("baseline (fast)", fast)
    plan = [f"rerun {i + 1}" for i in range(args.reruns)]
    plan.insert(min(1, len(plan)), "oneDNN off (aten)")
    plan.insert(min(4, len(plan)), "sentence-transformers")
    rows = []
    for label in plan:
        encoder = aten if label.startswith("oneDNN") else st if label.startswith("sentence") else fast
        current = run(label, encoder)
        checks = speed_results(baseline, current, gate, encoder="minilm",
                               stats=StatsOptions(seed=0, n_resamples=10_000))
        rows.append({"run": label, "load_average": os.getloadavg()[0],
                     **{c.metric: {"status": c.status, "ratio": c.delta + 1, "bound": c.bound,
                                   "baseline": c.expected, "new": c.actual, "message": c.message}
                        for c in checks}})

    reruns = [r for r in rows if r["run"].startswith("rerun")]
    false_alarms = sum(any(r[m]["status"] == "FAIL" for m in ("passages/s", "query p99 ms")) for r in reruns)
    import torch

    print(f"\nCPU: {cpu_model()} ({os.cpu_count()} cores, torch threads {torch.get_num_threads()}); NovelEval, "
          f"all-MiniLM-L6-v2, max_slowdown {gate.max_slowdown}, alpha {gate.alpha}\n")
    print("| run | load avg | passages/s | speed ratio (upper bound) | verdict | query p99 ms | speed ratio "
          "(upper bound) | verdict |")
    print("|---|---:|---:|---|---|---:|---|---|")
    for r in rows:
        t, q = r["passages/s"], r["query p99 ms"]
        print(f"| {r['run']} | {r['load_average']:.1f} | {t['new']:.1f} | {_ratio(t)} | {t['status']} | "
              f"{q['new']:.2f} | {_ratio(q)} | {q['status']} |")
    print(f"\nbaseline: {rows and rows[0]['passages/s']['baseline']:.1f} passages/s, query p99 "
          f"{rows and rows[0]['query p99 ms']['baseline']:.2f} ms")
    print(f"false alarms: {false_alarms} of {len(reruns)} reruns of the unchanged code")
    detected = [r["run"] for r in rows if not r["run"].startswith("rerun")
                and any(r[m]["status"] == "FAIL" for m in ("passages/s", "query p99 ms"))]
    print(f"detected: {', '.join(detected) or 'none'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"cpu": cpu_model(), "gate": gate.model_dump(), "runs": rows,
                                         "false_alarms": false_alarms, "reruns": len(reruns)}, indent=1))
    return 0


def _ratio(check: dict) -> str:
    return f"{check['ratio']:.2f}x ({check['bound']:.2f}x)"


if __name__ == "__main__":
    sys.exit(main())
