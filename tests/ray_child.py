"""Runs one suite with the Ray executor in a child process of the tests and prints the outcome as JSON.

Ray must never run inside the pytest process: a Ray driver whose cluster has been torn down can end its
own process later (Ray's core worker exits when it loses its GCS), which would kill the rest of the test
session. Usage (from tests/test_distributed.py):

    python tests/ray_child.py SUITE OUTPUT CACHE CHUNK_ROWS cluster|local
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


class _Messages(logging.Handler):
    """Keeps the messages logged by harness.encode.distributed (the test checks what the executor reports)."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main() -> None:
    suite_path, output, cache, chunk_rows, where = sys.argv[1:6]
    import ray
    import ray.data

    from harness.input.suite import load_suite
    from harness.pipeline.runner import RunOptions, run_suite
    from harness.vocabulary.errors import HarnessError

    messages = _Messages()
    logger = logging.getLogger("harness.encode.distributed")
    logger.setLevel(logging.INFO)
    logger.addHandler(messages)
    # Start both actors before the first chunk, so that both nodes encode (on a busy machine the second
    # actor may otherwise still be importing torch when the first has finished every chunk).
    ray.data.DataContext.get_current().wait_for_min_actors_s = 120

    nodes = None
    if where == "cluster":  # a head node and a second node on loopback, one CPU each
        from ray.cluster_utils import Cluster

        nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                              "object_store_memory": 150 * 2**20})
        nodes.add_node(num_cpus=1, object_store_memory=150 * 2**20)
    outcome: dict[str, object] = {"messages": messages.lines, "record": None, "error": None}
    environ = dict(os.environ)
    try:
        options = RunOptions(output=Path(output), cache=Path(cache), chunk_rows=int(chunk_rows), progress=False,
                             latency_calls=3, executor="ray", ray_address=nodes.address if nodes else None)
        [result] = run_suite(load_suite(Path(suite_path)), options)  # a failure comes back as data
        outcome["record"], outcome["error"] = (str(result.path) if result.ok else None), result.error
    except HarnessError as exc:
        outcome["error"] = str(exc)
    finally:
        outcome["ray_initialized_after"] = ray.is_initialized()
        outcome["environ_changed"] = sorted(key for key in {*environ, *os.environ}
                                            if environ.get(key) != os.environ.get(key))
        if nodes is not None:
            nodes.shutdown()
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
