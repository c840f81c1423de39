"""The served model against the in-process fast engine (issue 25): the same model (the bundled all-MiniLM-L6-v2) on
the same machine, encoded in this process and by the Infinity server (started here on 127.0.0.1, torch engine, CPU),
in one run (ratios only mean something within one run: the CPU varies between machines).

    python benchmarks/serving.py [--passages 2048] [--calls 500] [--rounds 3] [--duration 10]
                                 [--rates 5,10,20,40,80,160] [--concurrency 1,2,4,8,16] [--json PATH] [--record DIR]

1. Corpus ingest: the first --passages passages of the DL19 pool (MS MARCO passages), batches of 32. In process:
   `Encoder(engine fast).encode_documents`, and the sentence-transformers engine (what Infinity's torch engine
   runs, so the server's own cost shows apart from its engine's); served: `Endpoint.embed` with 4 requests in
   flight (and 1). --rounds interleaved rounds (fast, ST, served, served x1, ...); medians. The other side is idle
   while one is timed (the server is another process; both share the 2 cores).
2. Query latency at batch 1 (fast, sentence-transformers, served): --calls single-query calls each (MS MARCO dev
   queries, cycled), interleaved in blocks of 50; p50 / p99. Served calls go through the same client the harness
   uses (one kept-alive connection).
3. The HTTP + JSON cost alone: the same client against a stub endpoint that answers at once with a 384-float vector
   (closed loop, 1 client): what a request costs before any model runs.
4. The load curve: `harness load`'s code path (open loop at --rates, closed loop at --concurrency, --duration s each
   after 2 s of warm-up, SLO p99 100 ms) over the DL19 queries; with --record DIR the serving record is written
   there (what `harness report` renders).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.encode.endpoint import Endpoint  # noqa: E402
from harness.encode.load import StubEndpoint, Target, closed_loop  # noqa: E402
from harness.encode.models import Encoder, bundled_minilm_path  # noqa: E402
from harness.input.datasets import load_dataset  # noqa: E402
from harness.input.endpoint import EndpointSpec  # noqa: E402
from harness.input.suite import DatasetSpec, EncoderSpec, parse_suite  # noqa: E402
from harness.pipeline.serving import LoadOptions, profile_endpoint  # noqa: E402
from harness.scoring.records import write_serving_record  # noqa: E402
from harness.vocabulary import timing  # noqa: E402
from tests.servers import InfinityServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=2048)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rates", default="5,10,20,40,80,160")
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()

    cache = REPO / ".cache" / "harness-bench"
    pool = load_dataset(DatasetSpec(name="dl19-pool", path=REPO / "data" / "msmarco-trecdl2019-pool"), cache=cache)
    passages = pool.corpus.texts(0, args.passages)
    dev_queries = REPO / "data" / "msmarco-passage-dev-small" / "queries.jsonl"
    queries = [json.loads(line)["text"] for line in dev_queries.read_text(encoding="utf-8").splitlines()[:2000]]
    local = Encoder(EncoderSpec(name="in-process", model="bundled:all-MiniLM-L6-v2", engine="fast", device="cpu"))
    st = Encoder(EncoderSpec(name="in-process ST", model="bundled:all-MiniLM-L6-v2", engine="sentence-transformers",
                             device="cpu"))
    env = timing.environment()
    print(f"CPU: {env['cpu_model']} ({env['cpu_count']} cores), torch threads {env['torch_threads']}", flush=True)
    with InfinityServer(bundled_minilm_path(), log=Path("/tmp/infinity-bench.log")) as server:
        spec = EndpointSpec(url=server.url, concurrency=4)
        served = Endpoint(spec, where="benchmark")
        single = Endpoint(spec.model_copy(update={"concurrency": 1}), where="benchmark")
        info = served.open()
        single.open()
        print(f"server: {info.label} at {server.url}", flush=True)
        local.encode_documents(passages[:64])
        st.encode_documents(passages[:64])
        served.embed(passages[:64], batch_size=32)

        ingest: dict[str, list[float]] = {"in-process": [], "in-process ST": [], "served x4": [], "served x1": []}
        for _ in range(args.rounds):
            for name, run in (("in-process", lambda: local.encode_documents(passages)),
                              ("in-process ST", lambda: st.encode_documents(passages)),
                              ("served x4", lambda: served.embed(passages, batch_size=32)),
                              ("served x1", lambda: single.embed(passages, batch_size=32))):
                started = time.perf_counter()
                run()
                ingest[name].append(time.perf_counter() - started)
        rate = {name: args.passages / statistics.median(s) for name, s in ingest.items()}
        for name, r in rate.items():
            print(f"ingest {name}: {r:.1f} passages/s ({r / rate['in-process']:.2f}x in-process)", flush=True)

        latency: dict[str, list[float]] = {"in-process": [], "in-process ST": [], "served": []}
        for block in range(0, args.calls, 50):
            for name, call in (("in-process", lambda q: local.encode_queries([q])),
                               ("in-process ST", lambda q: st.encode_queries([q])),
                               ("served", lambda q: single.embed([q], batch_size=1))):
                for i in range(block, min(block + 50, args.calls)):
                    started = time.perf_counter()
                    call(queries[i % len(queries)])
                    latency[name].append((time.perf_counter() - started) * 1000)
        quantiles = {name: dict(zip(("p50", "p99"), np.percentile(v, [50, 99]).tolist()))
                     for name, v in latency.items()}
        for name, q in quantiles.items():
            print(f"query batch 1 {name}: p50 {q['p50']:.1f} ms, p99 {q['p99']:.1f} ms", flush=True)

        with StubEndpoint(dim=info.dimension) as stub:
            body = json.dumps(served.payload([queries[0]], info.served_model)).encode()
            http = closed_loop(Target(url=f"{stub.url}/embeddings", bodies=(body,), rows_per_request=1), 1,
                               duration_s=3.0, warmup_s=0.5)
        assert http.latency is not None
        print(f"HTTP + JSON alone (stub, 1 client): p50 {http.latency.p50:.2f} ms, p99 {http.latency.p99:.2f} ms",
              flush=True)

        suite = parse_suite({"name": "serving-benchmark",
                             "datasets": [{"name": "dl19-pool",
                                           "path": str(REPO / "data" / "msmarco-trecdl2019-pool")}],
                             "encoders": [{"name": "minilm-infinity", "engine": "http",
                                           "endpoint": {"url": server.url}}]},
                            source=REPO / "benchmarks" / "serving.yaml")
        options = LoadOptions(rates=[float(r) for r in args.rates.split(",")],
                              concurrency=[int(c) for c in args.concurrency.split(",")], duration_s=args.duration,
                              warmup_s=2.0, slo_p99_ms=100.0)
        record = profile_endpoint(suite, suite.encoders[0], pool, options,
                                  on_point=lambda p: print(f"  {p.mode} {p.offered_rate or p.concurrency}: "
                                                           f"{p.achieved_rate:.1f} req/s, p99 "
                                                           f"{p.latency.p99 if p.latency else float('nan'):.1f} ms, "
                                                           f"errors {p.errors}", flush=True))
        served.close()
        single.close()
    print(f"saturation: {record.saturation_rps} req/s at p99 <= 100 ms; client capacity "
          f"{record.client_capacity_rps:.0f} req/s", flush=True)
    if args.record:
        print(f"record: {write_serving_record(args.record, record)}")
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": env["cpu_model"],
              "cores": env["cpu_count"], "platform": platform.platform(), "server": info.label,
              "passages": args.passages, "ingest_seconds": ingest, "ingest_passages_per_s": rate,
              "query_latency_ms": quantiles, "http_json_stub_ms": {"p50": http.latency.p50, "p99": http.latency.p99},
              "saturation_rps": record.saturation_rps, "client_capacity_rps": record.client_capacity_rps,
              "points": [p.model_dump(mode="json", exclude={"latency": {"values_ms"},
                                                             "service_latency": {"values_ms"}})
                         for p in record.points]}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
