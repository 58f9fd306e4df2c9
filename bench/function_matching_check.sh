#!/usr/bin/env bash
# Real-image check of the function-matching recipe (issue 20): a direction, not a claim.
# CIFAR-10 (the JPEG copy in ../shared/data/cifar10_jpeg: HFKD_FM_TRAIN training images, default 5,000, and 1,000
# test images) at HFKD_FM_SIZE px (default 64) through the ImageNet preset; teacher resnet20 trained here; student
# resnet8 distilled with the shipped function-matching recipe shortened (HFKD_FM_EPOCHS, default 8; batch 64; lr
# 3e-3), with and without its consistent mixup, seeds 0 and 1.
#   bash bench/function_matching_check.sh [out_dir]     # results: $out/summary.md
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-outputs/fm_check}
data=${HFKD_CIFAR10_JPEG:-../shared/data/cifar10_jpeg}
epochs=${HFKD_FM_EPOCHS:-8}
common=(--dataset_name "$data" --eval_split test --streaming false --image_size "${HFKD_FM_SIZE:-64}"
        --max_train_samples "${HFKD_FM_TRAIN:-5000}" --max_eval_samples 1000
        --per_device_train_batch_size 64 --per_device_eval_batch_size 250 --dataloader_num_workers 1
        --report_to none --disable_tqdm true --save_strategy no)  # short runs: no checkpoints
recipe=recipes/imagenet/bit_r152x2-bit_r50x1/function_matching.yaml
if [ ! -f "$out/teacher/model.safetensors" ]; then
  python -m hfkd train "$recipe" "${common[@]}" --output_dir "$out/teacher" --model_name_or_path resnet20 \
    --method none --cls 1 --div 0 --mixup_alpha 0 --optim sgd --optim_args momentum=0.9 --learning_rate 0.05 \
    --weight_decay 5e-4 --decay_norm_and_bias true --max_grad_norm 0 --warmup_steps 0 --num_train_epochs "$epochs"
fi
for seed in 0 1; do
  for mixup in 1.0 0; do
    name="student_mixup${mixup}_seed${seed}"
    [ -f "$out/$name/results.json" ] && continue
    python -m hfkd train "$recipe" "${common[@]}" --output_dir "$out/$name" --model_name_or_path resnet8 \
      --teacher "$out/teacher" --seed "$seed" --mixup_alpha "$mixup" --learning_rate 3e-3 --warmup_steps 0.05 \
      --num_train_epochs "$epochs"
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| run | top-1 last | top-1 best |", "|---|---|---|"]
for path in sorted(out.glob("*/results.json")):
    (r,) = json.loads(path.read_text())
    rows.append(f"| {path.parent.name} | {r['top1_last']:.2f} | {r['top1_best']:.2f} |")
(out / "summary.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
