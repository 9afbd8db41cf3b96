#!/usr/bin/env bash
# Every GPU measurement of BENCHMARKS.md in one device session (run from the repository root).
# Needs .gpu/ (ignored by git): data/sst2/{train,dev}.tsv, tok/ (a BERT uncased tokenizer), base/ (a
# BERT-like encoder for the fine-tuning run). Usage: bash benchmarks/gpu_session.sh OUTDIR
set -u
OUTDIR=${1:-${OUT:-/tmp/gpu-session}}
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
LOG="$OUTDIR/session.log"
{
  date -u; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} >"$LOG" 2>&1
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "=== $name ($(date -u +%T), limit ${limit}s): $*" >>"$LOG"
  local start=$SECONDS
  timeout "$limit" "$@" >>"$LOG" 2>&1
  echo "=== $name rc=$? wall=$((SECONDS - start))s" >>"$LOG"
}
step smoke 60 python3 benchmarks/gpu_smoke.py
step sst2_bert_base 120 python3 benchmarks/bench_sst2_study.py --model bert-base --tokenizer .gpu/tok --data .gpu/data \
  --device cuda --batch-size 64 --rounds 3 --batch1-limit 200
step sst2_bert_large 150 python3 benchmarks/bench_sst2_study.py --model bert-large --tokenizer .gpu/tok --data .gpu/data \
  --device cuda --batch-size 64 --rounds 3 --batch1-limit 200
step diffusion 90 python3 benchmarks/gpu_network_diffusion.py
step hidden_attention 90 python3 benchmarks/gpu_hidden_attention.py
if [ -f benchmarks/gpu_attention_flow.py ]; then step attention_flow 90 python3 benchmarks/gpu_attention_flow.py; fi
step finetune 200 python3 benchmarks/finetune.py --base .gpu/base --data .gpu/data --device cuda --epochs 2 \
  --time-budget 150 --out /tmp/ft-gpu --quiet
echo "done $(date -u +%T)" >>"$LOG"
