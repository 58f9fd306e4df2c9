#!/usr/bin/env bash
# Issue 19's accuracy and sweep-time check on real images: the cifar10-mini recipes (../shared/data/cifar10_jpeg,
# 10,000 training images, resnet20 -> resnet8, 10 epochs), the teacher shortened to the students' 10 epochs.
#   1. the sweep of the logit methods (kd dkd dist logit_std spherical), seed 0, without and with --teacher_cache
#      (wall time of each; the cached sweep's cache is full, float16);
#   2. KD seed 1 online and from a full cache (a sweep of kd.yaml with --teacher_cache);
#   3. KD seeds 0 and 1 from a top-5 cache (CIFAR-10 has 10 classes, so a top-10 cache would be the full one).
#   bash bench/teacher_cache_accuracy.sh [out_dir]      # run on a quiet machine: the wall times are the result
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/teacher_cache_accuracy}
data=${HFKD_CIFAR10_JPEG:-../shared/data/cifar10_jpeg}
mkdir -p "$out"
log() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$out/times.log"; }
if [ ! -f "$out/teacher/model.safetensors" ]; then
  log "teacher start"
  python -m hfkd train recipes/cifar10-mini/teacher.yaml --dataset_name "$data" --num_train_epochs 10 \
    --lr_decay_epochs 7 9 --output_dir "$out/teacher" > "$out/teacher.log" 2>&1
  log "teacher end"
fi
methods=(kd dkd dist logit_std spherical)
recipes=("${methods[@]/#/recipes/cifar10-mini/}"); recipes=("${recipes[@]/%/.yaml}")
common=(-- --dataset_name "$data" --teacher "$out/teacher")
for mode in online cached; do
  [ -f "$out/sweep_$mode/results.json" ] && continue
  flag=(); [ "$mode" = cached ] && flag=(--teacher_cache)
  log "sweep $mode start"; begin=$SECONDS
  hfkd sweep "${recipes[@]}" --seeds 0 --output_dir "$out/sweep_$mode" "${flag[@]}" "${common[@]}" \
    > "$out/sweep_$mode.log" 2>&1
  log "sweep $mode end: $((SECONDS - begin)) s"
done
for mode in online cached; do
  [ -f "$out/kd_seed1_$mode/results.json" ] && continue
  flag=(); [ "$mode" = cached ] && flag=(--teacher_cache)
  log "kd seed 1 $mode start"
  hfkd sweep recipes/cifar10-mini/kd.yaml --seeds 1 --output_dir "$out/kd_seed1_$mode" "${flag[@]}" "${common[@]}" \
    > "$out/kd_seed1_$mode.log" 2>&1
  log "kd seed 1 $mode end"
done
for seed in 0 1; do
  cache="$out/top5_cache_seed$seed"
  [ -f "$out/kd_top5_seed$seed/results.json" ] && continue
  keys=(--dataset_name "$data" --teacher "$out/teacher" --seed "$seed" --teacher_cache "$cache" --teacher_cache_topk 5)
  log "top-5 cache seed $seed start"
  hfkd cache-teacher recipes/cifar10-mini/kd.yaml "${keys[@]}" > "$out/top5_cache_seed$seed.log" 2>&1
  log "kd top-5 seed $seed start"
  hfkd train recipes/cifar10-mini/kd.yaml "${keys[@]}" --output_dir "$out/kd_top5_seed$seed" \
    > "$out/kd_top5_seed$seed.log" 2>&1
  log "kd top-5 seed $seed end"
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for path in sorted(out.glob("**/seed-*/results.json")) + sorted(out.glob("kd_top5_seed*/results.json")):
    records = json.loads(path.read_text())
    print(path.parent.relative_to(out), [r["top1_last"] for r in (records if isinstance(records, list) else [records])])
for path in sorted(out.glob("*/throughput.json")):
    t = json.loads(path.read_text())
    print(path.parent.name, f"wall {t['wall_s']:.0f} s, training span {t['training_span_s']:.0f} s, "
          f"mean run {t['mean_run_img_per_s']:.0f} img/s")
PY
