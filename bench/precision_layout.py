"""One model's training step in fp32 NCHW, fp32 channels_last and bf16 autocast + channels_last (issue 18).

    python bench/precision_layout.py [--model resnet20] [--batch 64] [--json bench/results/precision_layout.json]

The three settings step their own copy of the model (cross-entropy, SGD 0.9) over the same random batch in
alternating windows of one process, so the ratios hold on a busy machine; the median of 5 windows of 3 steps after 2
warm-up steps each. bf16 autocast is ``torch.autocast("cpu", torch.bfloat16)``, what ``bf16: true`` does on a CPU.
This is the quickest way to see whether a CPU computes bf16 natively: without AMX-BF16 / AVX512-BF16 the bf16 row is
several times slower than fp32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETTINGS = {"fp32_nchw": (False, False), "fp32_channels_last": (False, True), "bf16_channels_last": (True, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--json", default="bench/results/precision_layout.json")
    args = parser.parse_args()
    from hfkd.launch import _cpuinfo, cpu_native_bf16
    from hfkd.models import create_model

    torch.manual_seed(0)
    x, y = torch.randn(args.batch, 3, 32, 32), torch.randint(0, 100, (args.batch,))
    steppers = {}
    for name, (bf16, channels_last) in SETTINGS.items():
        model = create_model(args.model, num_classes=100).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        steppers[name] = (model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), bf16, channels_last)

    def step(name: str) -> None:
        model, optimizer, bf16, channels_last = steppers[name]
        pixels = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(pixels).logits.float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for name in SETTINGS:
        for _ in range(2):
            step(name)
    windows = {name: [] for name in SETTINGS}
    for _ in range(5):
        for name in SETTINGS:
            begin = time.perf_counter()
            for _ in range(3):
                step(name)
            windows[name].append((time.perf_counter() - begin) / 3)
    base = statistics.median(windows["fp32_nchw"])
    result = {"model": args.model, "batch": args.batch, "cpu": _cpuinfo()[0], "native_bf16": cpu_native_bf16(),
              "steps": {name: {"step_s": statistics.median(w), "vs_fp32_nchw": base / statistics.median(w)}
                        for name, w in windows.items()}}
    for name, value in result["steps"].items():
        print(f"{args.model} {name}: {1e3 * value['step_s']:.0f} ms/step, {value['vs_fp32_nchw']:.2f}x fp32 NCHW")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
