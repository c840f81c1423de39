"""Encode a corpus on a Ray cluster with Ray Data (the `--executor ray` path of `harness run`).

The embedding store's missing chunks become the rows of a Ray Dataset (one chunk = one row = one
block; the driver streams the corpus texts in windows of `RAY_WINDOW_ROWS` rows, one Ray Dataset each);
`map_batches` runs them through a pool of actors, each of which loads the encoder once
(`Encoder(spec)`, on a GPU where the cluster has them) and encodes whole chunks with the single-process
path's own chunk encoder (`chunks.encode_chunk`: same unit, text order, batches, timing and token and
truncation counts), so the embeddings and the record are the same. The driver writes each finished
chunk into the same `EmbeddingStore` as results stream back, so a run killed at any point resumes from
the chunks already written; the record lists the hosts that encoded (`Performance.encoding_hosts`); the
rest of the pipeline (query encoding, search, metrics, record) runs on the driver, unchanged.

    address=None        start a local Ray instance for this run and shut it down afterwards
    address="host:port" connect to a running cluster (`ray start --head` on the head node); "auto"
                        finds one started on this machine
    Ray already initialised by the caller: use it as it is, leave it running

Ray is an optional extra (`pip install '.[ray]'`). See docs/scale.md for running on a real cluster.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.encode.chunks import EncodedChunk, EncodingHost, encode_chunk, this_host
from harness.encode.models import Encoder
from harness.encode.store import STORE_DTYPES, EmbeddingStore
from harness.input.datasets import Dataset
from harness.input.suite import EncoderSpec
from harness.vocabulary.errors import HarnessError
from harness.vocabulary.progress import progress as show_progress
from harness.vocabulary.timing import release_free_heap

log = logging.getLogger(__name__)

# Environment a worker needs to behave like the driver (offline Hub, quiet tokenizers).
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "HF_HUB_DISABLE_TELEMETRY")
# Paths that only make sense on the driver's machine: forwarded to a local instance only.
_FORWARDED_LOCAL_ENV = ("HARNESS_CACHE", "HF_HOME", "HF_HUB_CACHE", "SENTENCE_TRANSFORMERS_HOME")


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (ray without the [data] extra lacks pandas/pyarrow)
    except ImportError as exc:
        raise HarnessError(f"executor 'ray' needs Ray Data, which is not installed ({exc}); "
                           "install it with: pip install '.[ray]'  (or pip install 'ray[data]>=2.60')") from None
    return ray


class ChunkEncoder:
    """A Ray Data actor: loads the encoder once, then turns one chunk of texts into embeddings per call.

    Ray forwards a worker's exception only as text, so an input error (HarnessError: a model that does
    not load, NaN embeddings, ...) travels back as data in the `error` column and the driver raises it.
    """

    def __init__(self, spec: EncoderSpec, *, device: str, fingerprint: str, max_seq_length: int, dtype: str):
        self.host, self.hardware_key = this_host()
        self.worker = f"{self.host}:{os.getpid()}"
        self.dtype = STORE_DTYPES[dtype]
        self.error = ""
        try:
            self.encoder = Encoder(spec.model_copy(update={"device": device}))
        except HarnessError as exc:
            self.error = f"Ray worker {self.worker}: {exc}"
            return
        if self.encoder.fingerprint != fingerprint or self.encoder.max_seq_length != max_seq_length:
            self.error = (
                f"encoder {spec.name!r}: the Ray worker {self.worker} loaded {spec.model!r} with weights fingerprint "
                f"{self.encoder.fingerprint} and max_seq_length {self.encoder.max_seq_length}, but the driver has "
                f"{fingerprint} and {max_seq_length}; install the same model (and revision) on every node")

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [self._encode(int(chunk), [str(t) for t in texts])
                for chunk, texts in zip(batch["chunk"], batch["texts"])]
        arrays = {key: np.asarray([r[key] for r in rows]) for key in _NUMBERS}
        for key in _OBJECTS:
            arrays[key] = np.array([r[key] for r in rows], dtype=object)
        return arrays

    def _encode(self, index: int, texts: list[str]) -> dict[str, Any]:
        row = {"chunk": index, "rows": 0, "dim": 0, "data": b"", "seconds": 0.0, "tokens": 0, "truncated": 0,
               "worker": self.worker, "host": self.host, "hardware_key": self.hardware_key, "error": self.error}
        if self.error:
            return row
        try:
            chunk = encode_chunk(self.encoder, texts, index)
            release_free_heap()
        except HarnessError as exc:
            return {**row, "error": f"Ray worker {self.worker}, chunk {index}: {exc}"}
        data = np.ascontiguousarray(chunk.embeddings, dtype=self.dtype)
        return {**row, "rows": data.shape[0], "dim": data.shape[1], "data": data.tobytes(), "seconds": chunk.seconds,
                "tokens": chunk.tokens, "truncated": chunk.truncated}


_NUMBERS = ("chunk", "rows", "dim", "seconds", "tokens", "truncated")  # the columns of a ChunkEncoder row
_OBJECTS = ("data", "worker", "host", "hardware_key", "error")


def encode_on_ray(dataset: Dataset, encoder: Encoder, store: EmbeddingStore, *, address: str | None,
                  progress: bool, num_workers: int | None = None, cpus_per_worker: float | None = None,
                  ) -> list[EncodingHost]:
    """Encode the chunks `store` lacks on Ray actors; returns the hosts that encoded them (empty: nothing was).

    Workers: one GPU actor per cluster GPU when the cluster has GPUs (and the encoder's device is not
    'cpu'); otherwise CPU actors of `cpus_per_worker` CPUs each (default: one actor per node, with all
    of the smallest node's CPUs); never more than there are missing chunks. `num_workers` (or
    $HARNESS_RAY_WORKERS) and $HARNESS_RAY_CPUS_PER_WORKER override the defaults.
    """
    missing = store.missing()
    if not missing:
        return []
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _init(ray, address)
    try:
        return _run(ray, dataset, encoder, store, missing, progress=progress, num_workers=num_workers,
                    cpus_per_worker=cpus_per_worker)
    finally:
        if started_here:
            ray.shutdown()


def worker_env(*, local: bool) -> dict[str, str]:
    """Environment variables for the Ray workers (passed as the runtime_env, never written to os.environ):
    the driver's offline and tokenizer settings, no usage stats, and for a local instance the driver's
    cache paths and this package's source folder on PYTHONPATH."""
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # never phone home (ray.init of a local instance also turns it off)
    if local:
        env.update({k: os.environ[k] for k in _FORWARDED_LOCAL_ENV if k in os.environ})
        # Workers must import this very package, installed or not (e.g. a source checkout on sys.path).
        source = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    return env


def _init(ray, address: str | None) -> None:
    env = worker_env(local=address is None)
    if address is None:
        cpus = int(os.environ.get("HARNESS_RAY_CPUS") or os.cpu_count() or 1)
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
        return
    fix = ("start one with `ray start --head` and pass the address it prints (HOST:6379), or leave --address "
           "out to run on a local Ray instance")
    problem = _unreachable(address)  # ray.init itself retries an unreachable GCS for minutes
    if problem:
        raise HarnessError(f"cannot connect to the Ray cluster at {address!r} ({problem}); {fix}")
    try:
        ray.init(address=address, runtime_env={"env_vars": env}, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise HarnessError(f"cannot connect to the Ray cluster at {address!r} ({exc}); {fix}") from None


def _unreachable(address: str, timeout_s: float = 10.0) -> str | None:
    """Why HOST:PORT (optionally ray://HOST:PORT) takes no TCP connection, or None ("auto" is not checked)."""
    import socket

    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    return None


# Texts the driver hands to Ray at once: about 200 MB of MS MARCO passages. Each window is one Ray Dataset (its
# actor pool loads the model once per window), so driver memory stays bounded whatever the corpus size.
RAY_WINDOW_ROWS = 1 << 19


def _windows(store: EmbeddingStore, missing: list[int]) -> list[list[int]]:
    per_window = max(1, RAY_WINDOW_ROWS // store.chunk_rows)
    return [missing[i:i + per_window] for i in range(0, len(missing), per_window)]


def _worker_plan(ray, encoder: Encoder, n_missing: int, num_workers: int | None,
                 cpus_per_worker: float | None) -> tuple[int, dict[str, float], str]:
    """(actors, resources per actor, device). GPU cluster: one actor per GPU. CPU cluster: one actor per
    node, holding all of the smallest node's CPUs (torch threads within the actor), so the model is
    loaded once per node rather than once per core."""
    num_workers = num_workers or int(os.environ.get("HARNESS_RAY_WORKERS") or 0) or None
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus and encoder.spec.device != "cpu":
        return max(1, min(num_workers or gpus, n_missing)), {"num_gpus": 1}, "cuda"
    if encoder.spec.device == "cuda":
        raise HarnessError(f"encoder {encoder.spec.name!r} asks for device 'cuda' but the Ray cluster has no GPUs; "
                           "use device: auto or cpu, or add GPU nodes")
    node_cpus = [float(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node.get("Alive")]
    node_cpus = [c for c in node_cpus if c >= 1] or [1.0]
    if cpus_per_worker is None:
        cpus_per_worker = float(os.environ.get("HARNESS_RAY_CPUS_PER_WORKER") or min(node_cpus))
    workers = num_workers or max(1, int(sum(c // cpus_per_worker for c in node_cpus)))
    return max(1, min(workers, n_missing)), {"num_cpus": cpus_per_worker}, "cpu"


def _run(ray, dataset: Dataset, encoder: Encoder, store: EmbeddingStore, missing: list[int], *,
         progress: bool, num_workers: int | None, cpus_per_worker: float | None) -> list[EncodingHost]:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # our own bar below counts documents written to the store
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-run "Starting execution" chatter
    workers, per_worker, device = _worker_plan(ray, encoder, len(missing), num_workers, cpus_per_worker)
    todo = sum(len(store.rows_of(i)) for i in missing)
    label = f"encode {dataset.name} × {encoder.spec.name} on Ray ({workers} {device} workers)"
    written: set[int] = set()
    used: set[str] = set()
    hosts: dict[tuple[str, str], list[int]] = {}  # (host, hardware key) -> [chunks, rows]
    with show_progress(todo, label, enabled=progress) as update:
        for window in _windows(store, missing):
            # The driver holds one window's texts at a time (read from the corpus stream), not the corpus.
            items = [{"chunk": index, "texts": dataset.corpus.texts(store.rows_of(index).start,
                                                                    store.rows_of(index).stop)}
                     for index in window]
            chunks = ray.data.from_items(items, override_num_blocks=len(items))  # one chunk per block
            del items
            encoded = chunks.map_batches(
                ChunkEncoder,
                fn_constructor_kwargs={"spec": encoder.spec, "device": device, "fingerprint": encoder.fingerprint,
                                       "max_seq_length": encoder.max_seq_length, "dtype": store.dtype},
                compute=ray.data.ActorPoolStrategy(size=min(workers, len(window))),
                batch_size=1,
                batch_format="numpy",
                **per_worker,
            )
            for row in encoded.iter_rows():
                if row["error"]:
                    raise HarnessError(str(row["error"]))
                embeddings = np.frombuffer(row["data"], dtype=STORE_DTYPES[store.dtype])
                embeddings = embeddings.reshape(int(row["rows"]), int(row["dim"]))
                chunk = EncodedChunk(int(row["chunk"]), embeddings, float(row["seconds"]), int(row["tokens"]),
                                     int(row["truncated"]))
                chunk.write(store)
                written.add(chunk.index)
                used.add(str(row["worker"]))
                tally = hosts.setdefault((str(row["host"]), str(row["hardware_key"])), [0, 0])
                tally[0] += 1
                tally[1] += len(embeddings)
                update(len(embeddings))
    log.info("%s: encoded %d chunks on %d Ray workers (%s)", dataset.name, len(written), len(used),
             ", ".join(sorted(used)))
    if written != set(missing):
        lost = sorted(set(missing) - written)
        raise HarnessError(f"Ray returned no embeddings for {len(lost)} chunks (first: {lost[0]}) of "
                           f"{store.path}; rerun to encode them")
    return [EncodingHost(host=host, hardware_key=key, chunks=chunks, rows=rows)
            for (host, key), (chunks, rows) in sorted(hosts.items())]

