"""Stopping at the first non-finite loss, before a checkpoint can hold the weights it produced.

The trainer records every step's loss terms with :meth:`NonFiniteLossGuard.record`; the flags stay on the device
(no host sync in the step). The guard is also a callback that reads them back and raises
``NonFiniteLossError`` at the end of a step on the CPU (where reading is free), and on an accelerator every
``check_every`` steps and whenever the Trainer is about to log or save, so no checkpoint is written after a nan or
inf loss.

A finite loss does not make a checkpoint safe: BatchNorm's running statistics are updated in the forward pass and
can overflow to inf while the loss still reads finite (and parameters can follow one step later). So whenever the
Trainer is about to save (and at the end of training, before the export), every floating-point parameter and buffer
of the trained model is checked too; a checkpoint is only written, and only named as the one to resume from, when
all of them are finite.
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from .checkpoints import latest_complete_checkpoint
from .errors import NonFiniteLossError

# optimizer steps between read-backs of the device-side flags on an accelerator
CHECK_EVERY_STEPS = 25


class NonFiniteLossGuard(TrainerCallback):
    """Remembers, on the device, the first step whose loss terms were nan or inf, and which terms."""

    def __init__(self, check_every: int = CHECK_EVERY_STEPS) -> None:
        self.check_every = check_every
        self._names: list[str] | None = None
        self._first_step: torch.Tensor | None = None  # 0 while every term has been finite
        self._bad_terms: torch.Tensor | None = None

    def record(self, terms: dict[str, torch.Tensor], loss: torch.Tensor, step: int) -> None:
        """Note step ``step``'s unweighted ``terms`` and total ``loss`` (0-d tensors) without reading them back."""
        names = [*terms, "loss"]
        values = torch.stack([*terms.values(), loss.detach().float()])
        bad = ~torch.isfinite(values)
        if self._names != names:
            self._names = names
            self._first_step = torch.zeros((), dtype=torch.int64, device=values.device)
            self._bad_terms = torch.zeros_like(bad)
        hit = bad.any() & (self._first_step == 0)
        self._first_step.copy_(torch.where(hit, torch.full_like(self._first_step, step), self._first_step))
        self._bad_terms.copy_(torch.where(hit, bad, self._bad_terms))

    def raise_if_non_finite(self, output_dir: str) -> None:
        """Raise ``NonFiniteLossError`` naming the term, the step and the last checkpoint written before it."""
        if self._first_step is None or int(self._first_step) == 0:
            return
        bad = [name for name, flag in zip(self._names, self._bad_terms.tolist()) if flag]
        term = next((name for name in bad if name != "loss"), "loss")
        latest = latest_complete_checkpoint(output_dir)
        kept = f"the last checkpoint, {latest}, is from before it" if latest else "no checkpoint was written"
        raise NonFiniteLossError(
            f"training stopped: the loss term {term!r} became nan or inf at step {int(self._first_step)}; {kept}; "
            f"lower the learning rate or the term's weight, or check the data"
        )

    def raise_if_weights_non_finite(self, model, step: int, output_dir: str) -> None:
        """Raise ``NonFiniteLossError`` when a floating-point parameter or buffer of ``model`` holds nan or inf
        (one read-back for the whole model)."""
        tensors = [(n, t) for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_floating_point()]
        if not tensors or bool(torch.stack([torch.isfinite(t).all() for _, t in tensors]).all()):
            return
        name = next(n for n, t in tensors if not bool(torch.isfinite(t).all()))
        latest = latest_complete_checkpoint(output_dir)
        kept = f"the last checkpoint, {latest}, is from before it" if latest else "no checkpoint was written"
        raise NonFiniteLossError(
            f"training stopped: the model's {name} became nan or inf by step {step} (the loss was still finite); "
            f"{kept}; lower the learning rate or check the data"
        )

    def _check(self, args, state, control, model=None) -> None:
        due = args.device.type == "cpu" or state.global_step % self.check_every == 0
        if due or control.should_save or control.should_log:
            self.raise_if_non_finite(args.output_dir)
        if control.should_save and model is not None:
            self.raise_if_weights_non_finite(model, state.global_step, args.output_dir)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self._check(args, state, control, model)

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self._check(args, state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.raise_if_non_finite(args.output_dir)
        if model is not None:  # before the export is written
            self.raise_if_weights_non_finite(model, state.global_step, args.output_dir)
