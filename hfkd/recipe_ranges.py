"""The valid range of every numeric recipe key, checked when the argument objects are built.

One table, :data:`RANGES`, holds a :class:`Range` for every numeric field of ``ModelArguments``, ``DataArguments``
and ``DistillationConfig`` (hfkd's own keys and the ``TrainingArguments`` keys it inherits), so that a value torch,
numpy or ``datasets`` would reject in the middle of a run (a batch size of 0, a negative learning rate, a seed numpy
cannot take) is one sentence naming the key, the value and the range before any model or data is loaded. A test
checks that every numeric field has an entry.

Bounds come from what the consumer of each value accepts: torch's optimizers (``lr``, ``weight_decay``, ``eps`` >= 0,
Adam's betas in [0, 1)), torch's ``BatchSampler`` and ``DataLoader`` (batch size >= 1, workers >= 0, prefetch >= 1),
numpy's ``RandomState`` (seeds in [0, 2**32 - 1]), the ``TrainingArguments`` documentation (``*_steps`` either a
fraction of the run in (0, 1) or a whole number of steps, ``max_steps`` -1 for "use num_train_epochs"), and the method
papers for the method hyperparameters (temperatures and feature sizes > 0, loss weights >= 0, CRD's momentum in
[0, 1]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import RecipeError

SEED_MAX = 2**32 - 1  # numpy.random.seed's upper bound (transformers.set_seed seeds numpy)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Range:
    """Valid values of one numeric key.

    ``low`` / ``high`` are bounds (None: unbounded), exclusive when ``low_open`` / ``high_open``; ``integer`` asks for
    a whole number (an int, or a float such as 4.0 that is one); ``steps_or_ratio`` accepts a fraction in (0, 1) or a
    whole number (the ``TrainingArguments`` convention for ``logging_steps`` and the like); ``also`` are further
    valid values (``max_steps``' -1); ``none`` says how the key is switched off with null, when it can be.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    steps_or_ratio: bool = False
    also: tuple[float, ...] = ()
    none: str | None = None

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if value in self.also:
            return True
        if self.integer and not float(value).is_integer():
            return False
        if self.steps_or_ratio and value >= 1 and not float(value).is_integer():
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        """The range in words, e.g. ``an integer >= 1``, ``in [0, 1)``, ``-1 or an integer >= 1``."""
        if self.low is not None and self.high is not None:
            bounds = (f"in {'(' if self.low_open else '['}{_number(self.low)}, {_number(self.high)}"
                      f"{')' if self.high_open else ']'}")
            text = f"an integer {bounds}" if self.integer else bounds
        else:
            bound = (f"{'>' if self.low_open else '>='} {_number(self.low)}" if self.low is not None
                     else f"{'<' if self.high_open else '<='} {_number(self.high)}")
            text = f"an integer {bound}" if self.integer else bound
        if self.steps_or_ratio:
            text = f"{'> 0' if self.low_open else '>= 0'} and a whole number from 1 on (below 1: a fraction of the run)"
        if self.also:
            text = f"{' or '.join(_number(v) for v in self.also)} or {text}"
        return f"{text} (or null {self.none})" if self.none else text


POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
COUNT = Range(1, integer=True)  # a size or a number of things: 1, 2, ...
SEED = Range(0, SEED_MAX, integer=True)
STEPS = Range(0, low_open=True, steps_or_ratio=True)

# every numeric field of the three argument classes; a list field's range applies to each element
RANGES: dict[str, Range] = {
    # --- DataArguments ---
    "train_val_split": Range(0, 1, low_open=True, high_open=True),
    "max_train_samples": Range(1, integer=True, none="for the whole split"),
    "max_eval_samples": Range(1, integer=True, none="for the whole split"),
    "image_mean": Range(0, 1),  # pixel units in [0, 1]
    "image_std": Range(0, low_open=True),
    "image_size": Range(1, integer=True, none="for the student's declared size, else 224"),
    "shuffle_buffer_size": COUNT,  # datasets' IterableDataset.shuffle buffer, in examples
    # timm's augmentation keys (timm.data.create_transform / Mixup): strengths >= 0, probabilities in [0, 1],
    # RandomResizedCrop's area fractions in (0, 1]
    "color_jitter": NON_NEGATIVE,
    "reprob": Range(0, 1),
    "train_crop_scale": Range(0, 1, low_open=True),
    "mixup_alpha": NON_NEGATIVE,
    "cutmix_alpha": NON_NEGATIVE,
    "mixup_prob": Range(0, 1),
    "mixup_switch_prob": Range(0, 1),
    # --- hfkd's loss, methods, schedule and machine keys ---
    "cls": Range(0, none="for the method's default"),
    "div": Range(0, none="for the method's default"),
    "beta": Range(0, none="for the method's default"),
    "kd_temperature": POSITIVE,
    "hint_layer": Range(0, integer=True),
    "simkd_factor": COUNT,
    "crd_feat_dim": COUNT,
    "crd_nce_k": COUNT,
    "crd_nce_t": POSITIVE,
    "crd_nce_m": Range(0, 1),
    "spherical_multiplier": POSITIVE,
    "spherical_alphas": NON_NEGATIVE,  # loss weights, one per phase of the alpha schedule
    "spherical_alpha_epochs": Range(0, integer=True),
    "teacher_cache_topk": Range(1, integer=True, none="for every logit"),
    "dkd_alpha": NON_NEGATIVE,
    "dkd_beta": NON_NEGATIVE,
    "dkd_warmup_epochs": Range(0, integer=True),
    "dist_beta": NON_NEGATIVE,
    "dist_gamma": NON_NEGATIVE,
    "lr_decay_epochs": POSITIVE,
    "lr_decay_rate": Range(0, 1, low_open=True),
    "cpu_threads": Range(1, integer=True, none="for this process's share of the CPUs"),
    "reference_top1": Range(0, 100),
    # --- TrainingArguments keys (hfkd's defaults or transformers') ---
    "learning_rate": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "max_grad_norm": NON_NEGATIVE,
    "num_train_epochs": POSITIVE,  # unless max_steps is set: see check_ranges
    "max_steps": Range(1, integer=True, also=(-1,)),
    "per_device_train_batch_size": COUNT,
    "per_device_eval_batch_size": COUNT,
    "gradient_accumulation_steps": COUNT,
    "eval_accumulation_steps": Range(1, integer=True, none="to accumulate on the device"),
    "warmup_steps": Range(0, steps_or_ratio=True),
    "adam_beta1": Range(0, 1, high_open=True),
    "adam_beta2": Range(0, 1, high_open=True),
    "adam_epsilon": NON_NEGATIVE,
    "label_smoothing_factor": Range(0, 1, high_open=True),
    "neftune_noise_alpha": Range(0, none="for none"),
    "logging_steps": STEPS,
    "eval_steps": Range(0, low_open=True, steps_or_ratio=True, none="for logging_steps"),
    "save_steps": STEPS,
    "eval_delay": NON_NEGATIVE,
    "save_total_limit": Range(1, integer=True, none="to keep every checkpoint"),
    "seed": SEED,
    "data_seed": Range(0, SEED_MAX, integer=True, none="for seed"),
    "dataloader_num_workers": Range(0, integer=True),
    "dataloader_prefetch_factor": Range(1, integer=True, none="for torch's default"),
    "torch_empty_cache_steps": Range(1, integer=True, none="to never empty the cache"),
    "ddp_bucket_cap_mb": Range(1, integer=True, none="for torch's default"),
    "ddp_timeout": Range(1, integer=True),
    "local_rank": Range(0, integer=True, also=(-1,)),  # set by the launcher
}


def check_value(key: str, value: Any) -> None:
    """Raise ``RecipeError`` (one sentence: key, value, range) when ``value`` is outside ``RANGES[key]``.

    None passes for keys whose dataclass default is None; a list is checked element by element.
    """
    valid = RANGES[key]
    if value is None:
        return
    is_list = isinstance(value, (list, tuple))
    if not all(valid.contains(v) for v in (value if is_list else [value])):
        raise RecipeError(f"{key} must be {valid.describe()}{' (every element)' if is_list else ''}, got {value!r}")


def check_ranges(args) -> None:
    """Check every field of ``args`` (an argument dataclass) that has an entry in RANGES, and the one numeric rule
    that involves two keys: ``num_train_epochs`` may be anything when ``max_steps`` (which overrides it) is set."""
    max_steps = getattr(args, "max_steps", -1)
    for key, valid in RANGES.items():
        if not hasattr(args, key):
            continue
        if key == "num_train_epochs" and isinstance(max_steps, (int, float)) and max_steps > 0:
            continue
        value = getattr(args, key)
        if key == "num_train_epochs" and not valid.contains(value) and isinstance(value, (int, float)):
            raise RecipeError(f"num_train_epochs must be > 0 (or set max_steps > 0, which overrides it), got {value!r}; "
                              f"the run would train nothing")
        check_value(key, value)
        if valid.integer and isinstance(value, float):
            setattr(args, key, int(value))  # 4.0 from YAML: torch's samplers and loaders need an int
        elif valid.integer and isinstance(value, (list, tuple)):
            setattr(args, key, [int(v) for v in value])
