"""The fast engine's padding bound (`min_fill`) against the unbounded plan, per call batch size.

Every timed call encodes one batch of randomly drawn DL19-pool passages (as `harness profile` does); the
engines differ only in `min_fill` and run interleaved in a shuffled order per batch, so a shared machine
slows all alike. Prints passages/s per setting and the ratio to `min_fill=0` (the unbounded plan), and the
lowest cosine between the two plans' embeddings.

    PYTHONPATH=. python benchmarks/padding.py                          # MiniLM, 512 passages, 2 rounds
    PYTHONPATH=. python benchmarks/padding.py --model random:distilbert-base --n 256 --rounds 1
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.encode.engines import FastEngine  # noqa: E402
from harness.encode.models import load_sentence_transformer  # noqa: E402
from harness.pipeline.sweep import dataset_texts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--n", type=int, default=512, help="passages (default 512)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-sizes", default="8,32,128")
    parser.add_argument("--fills", default="0,0.5,0.75,0.85")
    args = parser.parse_args()

    texts = dataset_texts(REPO / "data" / "msmarco-trecdl2019-pool", args.n, seed=1)
    model = load_sentence_transformer(args.model, device="cpu")
    fills = [float(f) for f in args.fills.split(",")]
    engines = {f: FastEngine(model, min_fill=f) for f in fills}
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        for engine in engines.values():
            engine.encode(batches[0])  # warm-up: oneDNN builds kernels per new shape
        seconds = dict.fromkeys(engines, 0.0)
        for round_ in range(args.rounds):
            for i, batch in enumerate(batches):
                order = list(engines)
                random.Random(round_ * 1000 + i).shuffle(order)
                for fill in order:
                    start = time.perf_counter()
                    engines[fill].encode(batch)
                    seconds[fill] += time.perf_counter() - start
        base = seconds[fills[0]]
        cells = [f"min_fill {f}: {args.rounds * len(texts) / s:6.1f}/s ({base / s:.2f}x)" for f, s in seconds.items()]
        print(f"{args.model} batch {batch_size:>4}  " + "  ".join(cells), flush=True)
    reference = engines[fills[0]].encode(texts[:64]).embeddings
    for fill in fills[1:]:
        other = engines[fill].encode(texts[:64]).embeddings
        cos = (reference * other).sum(1) / np.linalg.norm(reference, axis=1) / np.linalg.norm(other, axis=1)
        print(f"cosine min, min_fill {fill} vs {fills[0]}: {cos.min():.7f}")


if __name__ == "__main__":
    main()
