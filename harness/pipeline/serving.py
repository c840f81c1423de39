"""`harness load`: a suite's served encoders (engine http) under load, one serving record per encoder x dataset.

Each record sends the dataset's real texts: its queries one per request (`workload: query`, as a search service
sees them) or its passages in batches (`ingest`). Open loop at each offered rate, closed loop at each concurrency
(`harness.encode.load`), after measuring in the same process how many requests/s this client can generate at all
against a trivial local endpoint: a point beyond that is marked client-limited (its latencies bound the server's
only from above). Rates above a point where the server was overloaded (it answered under half the requests sent,
or failed half of them) are not sent: the queue only grows from there, and each point would take its whole timeout.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field

from harness.analysis.serving import resumed_note, saturation_rate
from harness.encode.endpoint import Endpoint
from harness.encode.load import LoadPoint, Target, client_capacity, closed_loop, open_loop
from harness.encode.store import cache_root
from harness.input.datasets import Dataset, load_dataset
from harness.input.suite import EncoderSpec, Suite
from harness.scoring.records import ServingRecord, SuiteInfo, Workload
from harness.vocabulary import timing
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.timing import utc_now
from harness.vocabulary.validation import StrictModel

PositiveFloat = Annotated[float, Field(gt=0)]
MAX_BODIES = 2_000  # distinct request bodies prepared per point (cycled): enough variety, bounded memory


class LoadOptions(StrictModel):
    rates: list[PositiveFloat] = []  # offered requests/s, open loop
    concurrency: list[Annotated[int, Field(gt=0)]] = []  # closed loop
    duration_s: PositiveFloat = 30.0  # measured window per point
    warmup_s: Annotated[float, Field(ge=0)] = 5.0
    workload: Workload = "query"
    batch_size: Annotated[int, Field(gt=0)] | None = None  # ingest: passages per request (default the encoder's)
    slo_p99_ms: PositiveFloat = 100.0
    seed: int = 0
    max_in_flight: Annotated[int, Field(gt=0)] = 1024
    cache: Path | None = None  # where corpus offset indexes live (as for `harness run`)


def load_profile(suite: Suite, options: LoadOptions, *, output: Path,
                 on_point: Callable[[LoadPoint], None] | None = None,
                 ) -> list[tuple[ServingRecord, Path]]:
    """Load every served encoder of the suite with every dataset's texts; write and return the serving records."""
    from harness.scoring.records import write_serving_record

    if not options.rates and not options.concurrency:
        raise HarnessError("give the load to apply: --rates (offered requests/s, open loop) and/or --concurrency "
                           "(workers, closed loop), e.g. --rates 5,10,20,40 --concurrency 1,4,16")
    served = [e for e in suite.encoders if e.endpoint is not None]
    if not served:
        raise HarnessError(f"suite {suite.name!r} has no encoder with engine http: `harness load` loads an "
                           "embedding server; add an encoder with engine: http and endpoint: {url: ...}")
    cache = options.cache or cache_root()
    datasets = [load_dataset(spec, cache=cache) for spec in suite.datasets]
    written = []
    for spec in served:
        for dataset in datasets:
            record = profile_endpoint(suite, spec, dataset, options, on_point=on_point)
            written.append((record, write_serving_record(output, record)))
    return written


def profile_endpoint(suite: Suite, spec: EncoderSpec, dataset: Dataset, options: LoadOptions, *,
                     on_point: Callable[[LoadPoint], None] | None = None) -> ServingRecord:
    assert spec.endpoint is not None
    endpoint = Endpoint(spec.endpoint, where=f"encoder {spec.name!r}")
    try:
        server = endpoint.open()
        rows = 1 if options.workload == "query" else options.batch_size or spec.batch_size
        texts = _texts(dataset, options.workload, rows, spec)
        bodies = tuple(json.dumps(endpoint.payload(list(texts[i:i + rows]), server.served_model)).encode()
                       for i in range(0, len(texts), rows))
        target = Target(url=endpoint.embed_url, bodies=bodies, rows_per_request=rows,
                        headers={k: v for k, v in endpoint.headers.items() if k.lower() != "content-type"},
                        validate=lambda body: endpoint.answer_problem(body, rows))
        capacity = client_capacity(rows_per_request=rows, dim=server.dimension)
        points, notes = [], []
        timeout = spec.endpoint.timeout_s
        for rate in sorted(options.rates):
            point = open_loop(target, rate, duration_s=options.duration_s, warmup_s=options.warmup_s,
                              timeout_s=timeout, seed=options.seed, max_in_flight=options.max_in_flight,
                              capacity=capacity)
            points.append(point)
            if on_point:
                on_point(point)
            if _overloaded(point):
                higher = [r for r in options.rates if r > rate]
                if higher:
                    notes.append(f"not sent: {', '.join(f'{r:g}' for r in sorted(higher))} req/s, above {rate:g} "
                                 f"req/s where the server answered {point.achieved_rate:.1f} req/s with "
                                 f"{sum(point.errors.values())} errors of {point.sent}: overloaded")
                break
        for workers in sorted(options.concurrency):
            point = closed_loop(target, workers, duration_s=options.duration_s, warmup_s=options.warmup_s,
                                timeout_s=timeout)
            points.append(point)
            if on_point:
                on_point(point)
    finally:
        endpoint.close()
    resumed = resumed_note(points, options.slo_p99_ms)
    if resumed:
        notes.append(resumed)
    return ServingRecord(name=spec.name, version=spec.version,
                         suite=SuiteInfo(name=suite.name, path=str(suite.source) if suite.source else None),
                         dataset=dataset.name, dataset_fingerprint=dataset.fingerprint, server=server,
                         workload=options.workload, rows_per_request=rows, texts=len(texts),
                         slo_p99_ms=options.slo_p99_ms, client_capacity_rps=capacity,
                         server_on_client_host=_local(server.url),
                         saturation_rps=saturation_rate(points, options.slo_p99_ms), points=points, notes=notes,
                         environment=timing.environment(), created_at=utc_now())


def _texts(dataset: Dataset, workload: Workload, rows: int, spec: EncoderSpec) -> Sequence[str]:
    if workload == "query":
        return [spec.query_prefix + t for t in dataset.query_texts[:MAX_BODIES]]
    n = min(len(dataset.corpus), MAX_BODIES * rows)
    n -= n % rows
    if n == 0:
        raise HarnessError(f"dataset {dataset.name!r} has {len(dataset.corpus)} passages, fewer than one request "
                           f"of {rows} (--batch)")
    return [spec.document_prefix + t for t in dataset.corpus.texts(0, n)]


def _local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", socket.gethostname()) or host.startswith("127.") or host == "::1"


def _overloaded(point: LoadPoint) -> bool:
    """It answered under half of what was sent (the Poisson draw, not the nominal rate) or failed half of it."""
    sent_rate = point.sent / point.duration_s
    return point.achieved_rate < 0.5 * sent_rate or sum(point.errors.values()) > 0.5 * max(point.sent, 1)
