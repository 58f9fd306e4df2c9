#!/usr/bin/env bash
# The prepared GPU check (issue 18): run it once when a GPU is lent; at most about 8 minutes on one GPU.
#
#   bash bench/gpu_check.sh                 # writes bench/results/gpu_check/*.json and prints the tables
#   HFKD_GPU_CHECK_QUICK=1 bash bench/gpu_check.sh   # a tiny version that also runs on a CPU, to test the script
#
# 1. KD and SimKD training steps (resnet32x4 -> resnet8x4, CIFAR size) at batch 64 and 256 in fp32, bf16 (+
#    channels_last), and compiled with CUDA graphs (torch_compile_mode reduce-overhead, data augmented on the GPU).
# 2. N sweep runs sharing the GPU (hfkd sweep --runs_per_device 4) against one run alone.
# 3. The 224-px loader per worker against a 224-px KD step at batch 256, and decode_on_device on the GPU (issue 20).
# Targets (issue 18): a batch-64 KD step <= 5 ms; the aggregate img/s of 4 shared runs >= 4x one run's.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${HFKD_GPU_CHECK_OUT:-bench/results/gpu_check}
mkdir -p "$out"
python -c "import torch; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
if [ -n "${HFKD_GPU_CHECK_QUICK:-}" ]; then
  settings="fp32 fast"; batches="8"; models="--models tiny"; sharing="--images 256 --epochs 1 --model resnet8 --runs_per_device 2"
else
  settings="fp32 fast graphs"; batches="64 256"; models=""; sharing="--images 10000 --epochs 2 --runs_per_device 4"
fi
for batch in $batches; do
  timeout 200 python bench/train_throughput.py --kinds train --methods kd simkd --settings $settings \
    --batch "$batch" $models --json "$out/steps_batch$batch.json" || echo "batch $batch: stopped (timeout or error)"
done
timeout 180 python bench/sweep_sharing.py $sharing --json "$out/sweep_sharing.json" || echo "sweep sharing: stopped"
# 3. (issue 20) 224-px loader per worker vs a resnet50 -> resnet18 KD step at batch 256, and batched nvJPEG decoding
if [ -n "${HFKD_GPU_CHECK_QUICK:-}" ]; then loader="--images 64 --step-batch 2"; else
  loader="--images 512 --decode-device cuda --step-device cuda --step-batch 256"; fi
timeout 240 python bench/imagenet_loader.py $loader --json "$out/imagenet_loader.json" || echo "imagenet loader: stopped"
python bench/format_results.py --gpu "$out"/steps_batch*.json
python - "$out/sweep_sharing.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = r["shared"]["runs_per_device"]
print("| sweep | runs | aggregate img/s (wall) | aggregate img/s (training span) | per-run img/s |")
print("|---|---|---|---|---|")
for label, key in (("one at a time", "one_at_a_time"), (f"{n} at once", "shared")):
    s = r[key]
    print(f"| {label} | {s['runs']} | {s['aggregate_img_per_s']:.0f} | {s['aggregate_training_img_per_s']:.0f} | "
          f"{s['mean_run_img_per_s']:.0f} |")
print(f"\n{n} shared runs: {r['shared_vs_one_run_alone']:.2f}x the img/s of one run alone "
      f"({r['shared_vs_sequential_sweep']:.2f}x the one-at-a-time sweep)")
PY
