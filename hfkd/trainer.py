"""DistillationTrainer: ``transformers.Trainer`` with a frozen teacher and ``cls*CE + div*KD_T + beta*method``.

Only Trainer's hook points are overridden; the training loop, callbacks, checkpointing, mixed precision and
distributed set-up are transformers' and Accelerate's own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, has_length

from .config import DistillationConfig
from .data.collate import collate_image_batch
from .distillation_model import DistillationModel, LossWeights
from .errors import IncompatibleSetupError, RecipeError
from .export import export_student
from .methods import METHODS, NO_DISTILLATION, build_method
from .metrics import TopkAccuracyMetrics, ranked_predictions
from .results import summarize_evaluations
from .schedule import EpochMilestoneLR

logger = logging.getLogger(__name__)


def example_batch(dataset, collator, size: int = 2) -> dict[str, torch.Tensor]:
    """A small collated batch from the training set, used to size method modules (spec 1.4 step 2)."""
    indices = list(range(min(size, len(dataset))))
    items = dataset.__getitems__(indices) if hasattr(dataset, "__getitems__") else [dataset[i] for i in indices]
    return collator(items)


def _class_count(model: nn.Module) -> int | None:
    count = getattr(model, "num_classes", None)
    return int(count) if count is not None else None


class DistillationTrainer(Trainer):
    """Trains ``model`` (the student) from ``teacher`` with the method named by ``args.method``.

    The teacher is frozen, kept in eval mode, run without autograd, and is neither in the optimizer nor in any
    checkpoint; it runs only in training steps (evaluation uses the student, or the method's ``predict``).
    Checkpoints hold the student and the method's trainable modules and state, so a resumed run continues exactly;
    ``save_model()`` writes the clean export (``from_pretrained``-loadable student) instead.
    """

    def __init__(
        self,
        model: nn.Module,
        teacher: nn.Module | None = None,
        args: DistillationConfig | None = None,
        train_dataset=None,
        eval_dataset=None,
        data_collator=None,
        compute_metrics=None,
        preprocess_logits_for_metrics=None,
        class_names: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        args = args if args is not None else DistillationConfig(output_dir="outputs/run")
        data_collator = data_collator or collate_image_batch
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
            teacher = teacher.to(memory_format=torch.channels_last) if teacher is not None else None
        if train_dataset is not None and args.method in METHODS:
            train_dataset = METHODS[args.method].prepare_train_dataset(train_dataset, args)
        if isinstance(model, DistillationModel):
            distillation_model = model
        else:
            distillation_model = self._build_distillation_model(model, teacher, args, train_dataset, data_collator)
        if distillation_model.needs_teacher and teacher is None:
            raise RecipeError(f"method {args.method!r} needs a teacher; set 'teacher' in the recipe")
        super().__init__(
            model=distillation_model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=data_collator,
            compute_metrics=compute_metrics or TopkAccuracyMetrics(),
            preprocess_logits_for_metrics=preprocess_logits_for_metrics or ranked_predictions,
            **kwargs,
        )
        self.teacher = self._prepare_teacher(teacher) if distillation_model.needs_teacher else None
        self.class_names = class_names
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_steps = 0
        self._updates_per_epoch: int | None = None

    # ---- set-up -------------------------------------------------------------------------------------------

    @staticmethod
    def _build_distillation_model(student, teacher, args, train_dataset, collator) -> DistillationModel:
        if args.method != NO_DISTILLATION:
            if teacher is None:
                raise RecipeError(f"method {args.method!r} needs a teacher; set 'teacher' in the recipe")
            student_classes, teacher_classes = _class_count(student), _class_count(teacher)
            if None not in (student_classes, teacher_classes) and student_classes != teacher_classes:
                raise IncompatibleSetupError(
                    f"the teacher predicts {teacher_classes} classes but the student {student_classes}; "
                    f"they must agree"
                )
        elif teacher is not None:
            logger.warning("method 'none' trains the model alone; the teacher is not used")
            teacher = None
        batch = example_batch(train_dataset, collator) if train_dataset is not None else None
        method = build_method(args.method, student, teacher, args, batch)
        defaults = (method.default_cls, method.default_div, method.default_beta) if method is not None else (1, 0, 0)
        # unset weights take the method's defaults; the resolved values are written back so the saved recipe shows them
        args.cls, args.div, args.beta = (
            float(value if value is not None else default)
            for value, default in zip((args.cls, args.div, args.beta), defaults)
        )
        weights = LossWeights(cls=args.cls, div=args.div, beta=args.beta, kd_temperature=args.kd_temperature)
        active = weights.cls > 0 or (method is not None and (weights.div > 0 or weights.beta > 0))
        if not active:
            raise RecipeError("cls, div and beta give every loss term a weight of 0, so nothing would be trained")
        model = DistillationModel(student, method, weights)
        if batch is not None:
            model.image_size = int(batch["pixel_values"].shape[-1])
        return model

    def _prepare_teacher(self, teacher: nn.Module) -> nn.Module:
        teacher.eval()
        teacher.requires_grad_(False)
        # placed on the device (and in the same autocast) for inference only: no DDP wrapper, no gradient buckets
        return self.accelerator.prepare_model(teacher, evaluation_mode=True)

    # ---- optimisation -------------------------------------------------------------------------------------

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Every parameter decays when ``decay_norm_and_bias`` (the references' SGD), else transformers' rule."""
        if self.args.decay_norm_and_bias:
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def set_initial_training_values(self, args, dataloader):
        values = super().set_initial_training_values(args, dataloader)
        self._updates_per_epoch = values[1] if has_length(dataloader) else None
        return values

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.args.lr_decay_epochs:
            if self._updates_per_epoch is None:
                raise RecipeError("lr_decay_epochs needs a training set with a known length; use lr_scheduler_type")
            self.lr_scheduler = EpochMilestoneLR(
                optimizer or self.optimizer, self._updates_per_epoch, self.args.lr_decay_epochs, self.args.lr_decay_rate
            )
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    # ---- the step ------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _teacher_forward(self, pixel_values: torch.Tensor):
        method = self.accelerator.unwrap_model(self.model).method
        return self.teacher(pixel_values, return_features=method.needs_teacher_features)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.args.channels_last and inputs["pixel_values"].dim() == 4:
            inputs["pixel_values"] = inputs["pixel_values"].contiguous(memory_format=torch.channels_last)
        teacher_outputs = None
        if model.training:
            # the current 1-based epoch, for methods with schedules (DKD warm-up, Spherical KD's alpha)
            inputs = {**inputs, "epoch": int(self.state.epoch or 0) + 1}
            if self.teacher is not None:
                teacher_outputs = self._teacher_forward(inputs["pixel_values"])
        outputs = model(**inputs, teacher_outputs=teacher_outputs)
        if model.training:
            for name, value in outputs["terms"].items():
                self._term_sums[name] = self._term_sums.get(name, 0.0) + value
            self._term_steps += 1
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    # ---- logging ---------------------------------------------------------------------------------------------

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds each loss term (mean since the last log, over all processes) and the best eval top-1 so far."""
        if "loss" in logs and self._term_steps:
            names = sorted(self._term_sums)
            means = torch.stack([self._term_sums[n] for n in names]) / self._term_steps
            means = self.accelerator.reduce(means, reduction="mean")
            logs.update({f"loss_{n}": v for n, v in zip(names, means.tolist())})
            self._term_sums, self._term_steps = {}, 0
        if "eval_top1" in logs:
            logs["eval_top1_best"] = summarize_evaluations([*self.state.log_history, logs])["top1_best"]
        super().log(logs, start_time)

    # ---- saving ----------------------------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints keep the full training state; any other save writes the clean export."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if Path(output_dir).name.startswith(PREFIX_CHECKPOINT_DIR):
            return super()._save(output_dir, state_dict)
        if self.args.should_save:
            self.export_model(output_dir)

    def export_model(self, output_dir: str | None = None) -> Path:
        """Write the student as a ``from_pretrained``-loadable model (plus its image processor)."""
        model = self.accelerator.unwrap_model(self.model)
        return export_student(
            model,
            output_dir or self.args.output_dir,
            class_names=self.class_names,
            image_processor=self.processing_class,
            distillation=self.distillation_summary(),
        )

    def distillation_summary(self) -> dict[str, Any]:
        """How this student was made and how well it does (stored in the export's config)."""
        model = self.accelerator.unwrap_model(self.model)
        weights = model.weights
        return {
            "method": self.args.method,
            "teacher": getattr(self.teacher, "hfkd_source", None) if self.teacher is not None else None,
            "cls": weights.cls,
            "div": weights.div,
            "beta": weights.beta,
            "kd_temperature": weights.kd_temperature,
            "results": summarize_evaluations(self.state.log_history),
        }
