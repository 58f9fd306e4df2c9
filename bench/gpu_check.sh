#!/usr/bin/env bash
# The prepared GPU check (issues 18, 19, 20): run it once when a GPU is lent; at most 9 min on one GPU (limits sized
# from the H200 run of 2026-11-30, BENCHMARKS.md).
# Each part has its own time limit and writes its JSON as soon as it ends, so a stopped part loses only itself.
#
#   bash bench/gpu_check.sh                 # writes bench/results/gpu_check/*.json and prints the tables
#   HFKD_GPU_CHECK_QUICK=1 bash bench/gpu_check.sh   # a tiny version that also runs on a CPU, to test the script
#
# 1. KD and SimKD training steps (resnet32x4 -> resnet8x4, CIFAR size) at batch 64 in fp32, bf16 (+
#    channels_last) and compiled with CUDA graphs (torch_compile_mode reduce-overhead, data augmented on the GPU);
#    at batch 256 in fp32 and bf16.
# 2. N sweep runs sharing the GPU (hfkd sweep --runs_per_device 4) against one run alone.
# 3. The 224-px loader per worker against a 224-px KD step at batch 256, and decode_on_device on the GPU (issue 20).
# 4. (issue 19) a KD step from a teacher cache against the online KD step, and the cache build's speed.
# Targets (issue 18): a batch-64 KD step <= 5 ms; the aggregate img/s of 4 shared runs >= 4x one run's.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${HFKD_GPU_CHECK_OUT:-bench/results/gpu_check}
mkdir -p "$out"
python -c "import torch, transformers, datasets, timm; print('device:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu', '| torch', torch.__version__, '| transformers', transformers.__version__, '| datasets', datasets.__version__, '| timm', timm.__version__)"
if [ -n "${HFKD_GPU_CHECK_QUICK:-}" ]; then
  settings="fp32 fast"; models="--models tiny"; b64="8"; b256="8"
  sharing="--images 256 --epochs 1 --model resnet8 --runs_per_device 2"
  loader="--images 64 --step-batch 2"; cache="--images 256 --windows 2 --steps 2"
else
  settings="fp32 fast graphs"; models=""; b64="64"; b256="256"
  sharing="--images 4000 --epochs 1 --runs_per_device 4"  # 89 s on an H200
  loader="--images 512 --decode-device cuda --step-device cuda --step-batch 256"
  cache="--images 4096 --windows 5 --steps 20"
fi
part() {  # part NAME SECONDS COMMAND...: run one part under its own limit; a failure stops only that part
  local name=$1 limit=$2; shift 2
  local begin=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1; local rc=$?
  echo "$name: exit $rc after $((SECONDS - begin)) s (limit $limit s)"; tail -3 "$out/$name.log"
  # HFKD_GPU_CHECK_ARCHIVE=F: everything so far in one archive after each part (a remote machine that returns few files)
  if [ -n "${HFKD_GPU_CHECK_ARCHIVE:-}" ]; then tar czf "$HFKD_GPU_CHECK_ARCHIVE" -C "$out" .; fi
}
# 4. (issue 19) cached vs online KD step, build speed, whole build
part teacher_cache 60 python bench/teacher_cache.py $cache --json "$out/teacher_cache.json"
# 3. (issue 20) 224-px loader per worker vs a resnet50 -> resnet18 KD step at batch 256, batched nvJPEG decoding
part imagenet_loader 90 python bench/imagenet_loader.py $loader --json "$out/imagenet_loader.json"
# 1. (issue 18) training steps: batch 64 with CUDA graphs (the 5 ms target), then batch 256 without
part steps_batch64 180 python bench/train_throughput.py --kinds train --methods kd simkd --settings $settings \
  --batch "$b64" $models --json "$out/steps_batch64.json"
# 2. (issue 18) sweep runs sharing the GPU against one run alone
part sweep_sharing 100 python bench/sweep_sharing.py $sharing --json "$out/sweep_sharing.json"
part steps_batch256 100 python bench/train_throughput.py --kinds train --methods kd simkd --settings fp32 fast \
  --batch "$b256" $models --json "$out/steps_batch256.json"
ls "$out"/steps_batch*.json >/dev/null 2>&1 && python bench/format_results.py --gpu "$out"/steps_batch*.json
[ -f "$out/sweep_sharing.json" ] && python - "$out/sweep_sharing.json" <<'PY'
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
exit 0
