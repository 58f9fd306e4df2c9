"""Markdown tables for BENCHMARKS.md from the JSON files the benchmarks write.

    python bench/format_results.py [--train bench/results/train_throughput.json] [--flops bench/results/step_flops.json]
    python bench/format_results.py --relative before.json after.json   # a before/after table of "relative" runs
    python bench/format_results.py --gpu bench/results/h100/*.json        # GPU runs, with model FLOP utilisation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def train_table(report: dict, flops: dict | None) -> str:
    rows = ["| method | fp32 img/s | fast img/s | fast / bare fp32 KD | step vs KD (fp32) | step vs KD (fast) | "
            "arithmetic vs KD | peak RSS fp32 / fast (MB) |", "|---|---|---|---|---|---|---|---|"]
    train = report["train"]
    bare_fp32 = report.get("overhead", {}).get("kd/fp32", {}).get("bare_step_s")
    methods = sorted({key.split("/")[0] for key in train})
    kd = {s: train.get(f"kd/{s}", {}).get("img_per_s") for s in ("fp32", "fast")}
    for method in methods:
        fp32, fast = train.get(f"{method}/fp32", {}), train.get(f"{method}/fast", {})
        cells = [method]
        for result in (fp32, fast):
            cells.append(f"{result['img_per_s']:.1f}" if "img_per_s" in result else result.get("error", "–"))
        cells.append(f"{fast['img_per_s'] * bare_fp32 / 64:.2f}×" if bare_fp32 and "img_per_s" in fast else "–")
        for setting, result in (("fp32", fp32), ("fast", fast)):
            relative = report.get("relative", {}).get(f"{method}/{setting}", {}).get("relative_to_kd")
            if method == "kd":
                cells.append("1")
            elif relative is not None:  # alternating windows in one process: the robust figure
                cells.append(f"{relative:.2f}× (same process)")
            elif "img_per_s" in result and kd[setting]:
                cells.append(f"{kd[setting] / result['img_per_s']:.2f}×")
            else:
                cells.append("–")
        arithmetic = (flops or {}).get("flops", {}).get(f"{method}/fp32", {}).get("relative_to_kd")
        cells.append("1" if method == "kd" else (f"{arithmetic:.2f}×" if arithmetic else "–"))
        memory = [f"{r['peak_rss_mb']:.0f}" if "peak_rss_mb" in r else "–" for r in (fp32, fast)]
        cells.append(" / ".join(memory))
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def settings_table(report: dict, settings: list[str]) -> str:
    """img/s of every method in each setting, and each setting's speed-up over fp32 (NCHW) for that method."""
    train = report["train"]
    header = ["method", *(f"{s} img/s" for s in settings), *(f"{s} / fp32" for s in settings if s != "fp32"),
              "peak RSS (MB)"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in sorted({key.split("/")[0] for key in train}):
        results = [train.get(f"{method}/{s}", {}) for s in settings]
        cells = [method] + [f"{r['img_per_s']:.1f}" if "img_per_s" in r else r.get("error", "–") for r in results]
        base = train.get(f"{method}/fp32", {}).get("img_per_s")
        for setting, result in zip(settings, results):
            if setting != "fp32":
                cells.append(f"{result['img_per_s'] / base:.2f}×" if base and "img_per_s" in result else "–")
        cells.append(" / ".join(f"{r['peak_rss_mb']:.0f}" for r in results if "peak_rss_mb" in r) or "–")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def reference_table(report: dict) -> str:
    """The Trainer in a setting against the reference code's bare fp32 NCHW loop, alternating windows."""
    rows = ["| method | setting (resolved) | Trainer step (ms) | reference loop step (ms) | speed-up |",
            "|---|---|---|---|---|"]
    for key, result in report.get("reference", {}).items():
        method, setting = key.split("/")
        if "speedup_vs_reference" not in result:
            rows.append(f"| {method} | {setting} | {result.get('error', '–')} | | |")
            continue
        chosen = result.get("resolved", {})
        what = ("bf16" if chosen.get("bf16") else "fp32") + (" + channels_last" if chosen.get("channels_last") else "")
        rows.append(f"| {method} | {setting} ({what}) | {1e3 * result['trainer_step_s']:.0f} | "
                    f"{1e3 * result['reference_step_s']:.0f} | {result['speedup_vs_reference']:.2f}× |")
    return "\n".join(rows)


def overhead_table(report: dict) -> str:
    rows = ["| method | setting | Trainer step (ms) | bare loop step (ms) | Trainer overhead |", "|---|---|---|---|---|"]
    for key, result in sorted(report.get("overhead", {}).items()):
        method, setting = key.split("/")
        if "overhead" in result:
            rows.append(f"| {method} | {setting} | {1e3 * result['trainer_step_s']:.1f} | "
                        f"{1e3 * result['bare_step_s']:.1f} | "
                        f"{100 * result['overhead']:+.1f}% |")
    return "\n".join(rows)


def eval_table(report: dict) -> str:
    rows = ["| method | setting | hfkd eval img/s (no teacher) | with a teacher forward (reference) | speed-up |",
            "|---|---|---|---|---|"]
    for key, result in sorted(report.get("eval", {}).items()):
        method, setting = key.split("/")
        if "speedup" in result:
            rows.append(f"| {method} | {setting} | {result['hfkd_eval_img_per_s']:.0f} | "
                        f"{result['teacher_forward_eval_img_per_s']:.0f} | {result['speedup']:.2f}× |")
    return "\n".join(rows)


def relative_table(reports: dict[str, dict]) -> str:
    """Step time over KD's (alternating windows in one process) per method and setting, one column per report."""
    labels = list(reports)
    rows = ["| method | setting | " + " | ".join(f"step vs KD, {label}" for label in labels) + " |",
            "|---|---|" + "---|" * len(labels)]
    keys = sorted({key for report in reports.values() for key in report.get("relative", {})},
                  key=lambda key: (key.split("/")[1], key.split("/")[0]))
    for key in keys:
        method, setting = key.split("/")
        cells = []
        for label in labels:
            result = reports[label].get("relative", {}).get(key, {})
            cells.append(f"{result['relative_to_kd']:.2f}× (KD {result['kd_step_s']:.3f} s)"
                         if "relative_to_kd" in result else result.get("error", "–"))
        rows.append(f"| {method} | {setting} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


# NVIDIA H100 SXM5 datasheet: 1,979 TFLOP/s bf16 tensor-core throughput with 2:4 sparsity, so 989.5 dense
H100_BF16_DENSE_TFLOPS = 989.5


def step_gflop_per_image(flops: dict | None, method: str) -> float | None:
    """A training step's counted GFLOP per image (bench/results/step_flops.json); KD's is in every method's entry."""
    counted = (flops or {}).get("flops", {})
    if method == "kd":
        return next(iter(counted.values()), {}).get("kd_gflop_per_img")
    return counted.get(f"{method}/fp32", {}).get("method_gflop_per_img")


def gpu_table(reports: list[dict], flops: dict | None) -> str:
    """GPU training throughput of every (method, setting, batch) in ``reports``, with model FLOP utilisation: the
    step's counted arithmetic (FlopCounterMode, per image) times img/s, over the H100's dense bf16 peak and over the
    bf16 matmul rate measured in the same run."""
    rows = ["| method | setting | batch | img/s | step (ms) | peak GPU memory (MB) | MFU vs 989.5 TFLOP/s | "
            "MFU vs measured matmul |", "|---|---|---|---|---|---|---|---|"]
    for report in reports:
        rates = report["matmul_gflops_before"]
        measured = (rates.get("bf16") or rates["fp32"]) / 1e3  # TFLOP/s
        for key, result in report.get("train", {}).items():
            method, setting = key.split("/")
            if "img_per_s" not in result:
                rows.append(f"| {method} | {setting} | {report['batch']} | {result.get('error', '–')} | | | | |")
                continue
            per_image = step_gflop_per_image(flops, method)
            tflops = per_image * result["img_per_s"] / 1e3 if per_image else None
            mfu = (f"{100 * tflops / H100_BF16_DENSE_TFLOPS:.2f}% | {100 * tflops / measured:.2f}%" if tflops
                   else "– | –")
            rows.append(f"| {method} | {setting} | {result.get('batch', report['batch'])} | {result['img_per_s']:.0f} | "
                        f"{1e3 * result['step_s']:.1f} | {result.get('peak_gpu_mb', 0):.0f} | {mfu} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="bench/results/train_throughput.json")
    parser.add_argument("--flops", default="bench/results/step_flops.json")
    parser.add_argument("--relative", nargs="+", default=None,
                        help="only a table of the 'relative' results of these JSON files, one column each")
    parser.add_argument("--gpu", nargs="+", default=None,
                        help="only a table of the GPU training runs in these JSON files, with model FLOP utilisation")
    parser.add_argument("--settings", nargs="+", default=None,
                        help="only the per-setting table of --train (e.g. fp32 fp32_cl auto) and its reference runs")
    args = parser.parse_args()
    flops = json.loads(Path(args.flops).read_text()) if Path(args.flops).is_file() else None
    if args.gpu:
        reports = [json.loads(Path(path).read_text()) for path in args.gpu]
        for path, report in zip(args.gpu, reports):
            print(f"{path}: {report['machine']}, torch {report['torch']}, {report['date']}; matmul GFLOP/s before "
                  f"{report.get('matmul_gflops_before')}, after {report.get('matmul_gflops_after')}")
        print("\n" + gpu_table(reports, flops) + "\n")
        for report in reports:
            if report.get("overhead"):
                print(overhead_table(report), "\n")
            if report.get("eval"):
                print(eval_table(report))
        return
    if args.relative:
        reports = {Path(path).stem: json.loads(Path(path).read_text()) for path in args.relative}
        for label, report in reports.items():
            print(f"{label}: {report['date']}, 2048² matmul GFLOP/s before {report.get('matmul_gflops_before')}, "
                  f"after {report.get('matmul_gflops_after')}")
        print("\n" + relative_table(reports))
        return
    report = json.loads(Path(args.train).read_text())
    if args.settings:
        print(f"{report['machine']}, {report.get('cpu')}, torch {report['torch']}, {report['date']}; 2048² matmul "
              f"GFLOP/s before {report.get('matmul_gflops_before')}, after {report.get('matmul_gflops_after')}\n")
        print(settings_table(report, args.settings), "\n")
        if report.get("overhead"):
            print(overhead_table(report), "\n")
        if report.get("reference"):
            print(reference_table(report))
        return
    print(f"machine: {report['machine']}, torch {report['torch']}, {report['date']}; 2048² matmul GFLOP/s before "
          f"{report.get('matmul_gflops_before')}, after {report.get('matmul_gflops_after')}\n")
    print(train_table(report, flops), "\n")
    print(overhead_table(report), "\n")
    print(eval_table(report))


if __name__ == "__main__":
    main()
