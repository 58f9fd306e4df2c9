"""What a run takes from the machine it is launched on: the device, and the settings that depend on it.

A recipe is portable: it never says "this machine has no GPU". When a run's arguments are built, :func:`choose_launch`
reads the host once and returns the ``TrainingArguments`` values that follow from it:

- a machine with no accelerator trains on the CPU (``use_cpu: true``, which also makes ``bf16`` mean CPU autocast
  and lets several launched CPU processes form a gloo process group) and pins no memory;
- ``speed_settings: auto`` adds bf16 autocast where the device computes bf16 natively, and ``channels_last`` where
  convolutions run faster in it (BENCHMARKS.md, "Speed settings by device").

Those values are applied to the arguments the run trains with and recorded with its results, but never written to
its resolved ``recipe.yaml``, so the recipe re-runs unchanged on another machine. Every host read of hfkd is here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .errors import RecipeError

logger = logging.getLogger(__name__)

# CPU feature flags (Linux /proc/cpuinfo names) under which oneDNN runs bf16 matmuls and convolutions natively
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# values of oneDNN's ONEDNN_MAX_CPU_ISA that still allow its bf16 instructions (a lower cap emulates an older CPU)
_BF16_ISA_CAPS = ("AVX512_CORE_BF16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
                  "AVX10_1_512_AMX_FP16", "AVX10_2_512_AMX_2", "ALL", "DEFAULT")


@dataclass(frozen=True)
class LaunchChoice:
    """The device a run trains on and the argument values that follow from it.

    ``overrides`` are ``TrainingArguments`` fields (``use_cpu``, ``dataloader_pin_memory``, ``bf16``,
    ``channels_last``) set for this machine on top of the recipe; ``reason`` says in a few words why.
    """

    device: str
    processor: str
    native_bf16: bool
    speed_settings: str
    overrides: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    def precision(self, values: Mapping[str, Any]) -> str:
        merged = {**values, **self.overrides}
        return "bf16 autocast" if merged.get("bf16") else "fp16 autocast" if merged.get("fp16") else "fp32"

    def describe(self, values: Mapping[str, Any]) -> str:
        """One line: device, processor, the precision and memory format the run uses, and why."""
        merged = {**values, **self.overrides}
        layout = "channels_last" if merged.get("channels_last") else "NCHW"
        return (f"training on {self.device} ({self.processor}): {self.precision(values)}, {layout} "
                f"(speed_settings {self.speed_settings}{': ' + self.reason if self.reason else ''})")

    def record(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """What results.json and the model card keep of the choice."""
        merged = {**values, **self.overrides}
        return {"device": self.device, "processor": self.processor, "native_bf16": self.native_bf16,
                "speed_settings": self.speed_settings, "precision": self.precision(values),
                "channels_last": bool(merged.get("channels_last")), "reason": self.reason}


def accelerator_kind() -> str | None:
    """``cuda``, ``xpu`` or ``mps`` when torch sees that accelerator, else None (a CPU-only machine)."""
    if torch.cuda.is_available():
        return "cuda"
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        return "xpu"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return None


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, feature flags) of this CPU from /proc/cpuinfo; ("", {}) where there is no such file."""
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return platform.processor() or platform.machine(), frozenset()
    name, flags = "", frozenset()
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return name or platform.machine(), flags


def cpu_native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bf16 natively for oneDNN, and the flag (or cap) that decided it.

    Native means AMX-BF16 or AVX512-BF16 (Intel Cooper Lake / Sapphire Rapids and later, AMD Zen 4 and later); without
    them bf16 autocast converts in software and is several times slower than fp32 (BENCHMARKS.md). An
    ``ONEDNN_MAX_CPU_ISA`` below AVX512_CORE_BF16 turns bf16 off, as it does for oneDNN itself.
    """
    _, flags = _cpuinfo()
    found = [flag for flag in NATIVE_BF16_CPU_FLAGS if flag in flags]
    if not found:
        return False, "no AMX-BF16 or AVX512-BF16"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and cap not in _BF16_ISA_CAPS:
        return False, f"ONEDNN_MAX_CPU_ISA={cap}"
    return True, found[0]


def _device_native_bf16(device: str) -> tuple[bool, str]:
    if device == "cuda":
        native = torch.cuda.is_bf16_supported(including_emulation=False)
        return native, "the GPU computes bf16" if native else "the GPU has no native bf16"
    if device == "cpu":
        return cpu_native_bf16()
    return False, f"bf16 speed on {device} is not known"


def choose_launch(values: Mapping[str, Any]) -> LaunchChoice:
    """The device and the argument values this machine sets for a run whose recipe holds ``values``.

    ``values`` are ``DistillationConfig`` fields from the recipe (missing ones take the field defaults). Raises
    ``RecipeError`` for ``fp16`` on a machine without a GPU, before anything is loaded.
    """
    overrides: dict[str, Any] = {}
    accelerator = accelerator_kind()
    if accelerator is None:
        if values.get("fp16"):
            raise RecipeError("fp16 needs a GPU, and this machine has none; use bf16: true for CPU autocast")
        overrides.update(use_cpu=True, dataloader_pin_memory=False)
    device = "cpu" if accelerator is None or values.get("use_cpu") else accelerator
    processor = _cpuinfo()[0] if device == "cpu" else _accelerator_name(device)
    native, why = _device_native_bf16(device)
    speed = values.get("speed_settings", "off")
    reasons = []
    if speed == "auto":
        sixteen_bit = bool(values.get("fp16") or values.get("bf16"))
        if native and not sixteen_bit:
            overrides["bf16"] = sixteen_bit = True
        reasons.append(f"bf16 {'native' if native else 'not native'}: {why}")
        # oneDNN's convolutions ran faster in NHWC on every x86 CPU measured (BENCHMARKS.md); other CPUs were not
        # measured, so they keep NCHW. cuDNN's run faster in NHWC with 16-bit tensor cores only.
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        if not values.get("channels_last") and ((device == "cpu" and x86) or (device != "cpu" and sixteen_bit)):
            overrides["channels_last"] = True
    return LaunchChoice(device, processor, native, speed, overrides, "; ".join(reasons))


def _accelerator_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return device


def set_cpu_threads(args) -> int | None:
    """Use this process's share of the CPU cores when training on the CPU; returns the thread count set.

    ``cpu_threads`` wins; else the cores this process may use divided by the processes launched on this machine
    (``accelerate launch`` without a config would otherwise force one thread per process).
    """
    if args.device.type != "cpu":
        return None
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    threads = args.cpu_threads or max(1, len(os.sched_getaffinity(0)) // local_processes)
    torch.set_num_threads(threads)
    return threads


def launch_arguments(args):
    """``args`` (a ``DistillationConfig``) with this machine's launch values applied, and the ``LaunchChoice``.

    Arguments built from a recipe already carry them and come back unchanged; arguments built in Python get a new
    object (``args`` itself is never changed). Used by the trainer for ``speed_settings: auto``.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.init}
    choice = choose_launch(values)
    changes = {key: value for key, value in choice.overrides.items() if getattr(args, key) != value}
    return (dataclasses.replace(args, **changes) if changes else args), choice
