"""DistillationTrainer: ``transformers.Trainer`` with a frozen teacher and ``cls*CE + div*KD_T + beta*method``.

The training loop, callbacks, checkpointing, mixed precision and distributed set-up are transformers' and
Accelerate's own. This class overrides the Trainer's public hook points only (``compute_loss``,
``prediction_step``, ``log``, ``get_decay_parameter_names``, ``create_scheduler``, ``create_model_card``,
``init_hf_repo``), plus ``_save`` and ``_push_from_checkpoint``, where transformers has no public hook for what a
save writes and what a push during training uploads. Everything else lives in its own module: set-up checks
(``setup_checks``), the loss (``distillation_model``), the teacher check, the non-finite guard and the epoch-tied
schedule (callbacks), the export, the model card and the Hub.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .config import DistillationConfig
from .data.augmentation import KeyedMixup
from .data.collate import collate_image_batch, example_batch
from .data.streaming import StreamingImageDataset, streaming_dataloader
from .distillation_model import DistillationModel, LossWeights, resolve_loss_weights
from .errors import HfkdError, UnreadableFileError
from .export import distillation_record, export_student
from .hub import push_training_snapshot, repo_creation_error
from .launch import launch_arguments
from .methods import METHODS
from .metrics import TopkAccuracyMetrics, ranked_predictions
from .model_card import CURVES_IMAGE, ModelCardContext, describe_trained_model, plot_training_curves, write_model_card
from .models import check_accepts_inputs, provenance_of
from .non_finite import NonFiniteLossGuard
from .results import summarize_evaluations
from .schedule import EpochLength, EpochMilestoneLR, milestone_epochs
from .setup_checks import (
    check_batch_sizes,
    check_data_for_method,
    check_models,
    check_report_to,
    resume_target,
    warn_about_schedule,
)
from .teacher_cache.cached_teacher import CachedTeacher
from .teacher_check import TeacherCheck, measure_teacher_top1

logger = logging.getLogger(__name__)

__all__ = ["DistillationTrainer", "example_batch"]


@contextmanager
def _resuming(checkpoint: str | None, part: str):
    """Turn a failure to load ``part`` of ``checkpoint`` (a file from another run, a changed recipe) into one
    sentence; the checkpoint's files were checked to be whole before training (``check_checkpoint_files``)."""
    try:
        yield
    except HfkdError:
        raise
    except Exception as err:  # noqa: BLE001  torch and transformers raise ValueError, RuntimeError, KeyError ...
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        raise UnreadableFileError(
            f"checkpoint {str(checkpoint)!r} does not fit this run: {part} could not be loaded ({first}); resume "
            f"with the recipe that wrote it, or from another checkpoint"
        ) from None


class DatasetEpoch(TrainerCallback):
    """Tells the training set which epoch starts (also a resumed one), so its keyed random draws (crops, flips, CRD
    negatives) are those of (seed, epoch, index)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


class DistillationTrainer(Trainer):
    """Trains ``model`` (the student) from ``teacher`` with the method named by ``args.method``.

    The teacher is frozen, kept in eval mode, run without autograd, and is neither in the optimizer nor in any
    checkpoint; it runs only in training steps (evaluation uses the student, or the method's ``predict``).
    Checkpoints hold the student and the method's trainable modules and state, so a resumed run continues exactly;
    ``save_model()`` writes the clean export (a ``from_pretrained``-loadable student) instead.

    ``loss_weights`` are resolved from ``args`` and the method's defaults when not given; ``args`` is never changed
    (``speed_settings: auto`` trains with a copy that has this machine's speed settings, ``hfkd.launch``).
    ``class_names`` (the dataset's labels) name the export's classes and are checked against the models' class
    counts. ``mixup`` (``hfkd.data.augmentation.KeyedMixup``) mixes every training batch before the teacher and
    the student see it; the ``cls`` term then learns its mixed targets. Raises ``RecipeError`` /
    ``IncompatibleSetupError`` (one sentence) for a set-up that cannot train.
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
        card_context: ModelCardContext | None = None,
        loss_weights: LossWeights | None = None,
        callbacks: list[TrainerCallback] | None = None,
        mixup: KeyedMixup | None = None,
        **kwargs: Any,
    ) -> None:
        args = args if args is not None else DistillationConfig(output_dir="outputs/run")
        if args.speed_settings == "auto":  # recipe runs arrive with it applied; Python-built arguments get it here
            args, choice = launch_arguments(args)
            logger.info("hfkd: %s", choice.describe(vars(args)))
        data_collator = data_collator or collate_image_batch
        self.card_context = card_context or ModelCardContext()
        student = model.student if isinstance(model, DistillationModel) else model
        check_models(args.method, student, teacher, class_names, self.card_context.dataset_name)
        check_report_to(args.report_to)
        check_data_for_method(args.method, isinstance(train_dataset, StreamingImageDataset), mixup is not None)
        warn_about_schedule(args)
        if train_dataset is not None and args.method in METHODS:
            train_dataset = METHODS[args.method].prepare_train_dataset(train_dataset, args)
        # a streamed epoch holds whole batches only (StreamingImageDataset.for_process); its len() counts batches
        if train_dataset is not None and not isinstance(train_dataset, StreamingImageDataset):
            check_batch_sizes(args, len(train_dataset))
        if isinstance(teacher, CachedTeacher):  # it looks the teacher's logits up by example index
            train_dataset = CachedTeacher.indexed(train_dataset)
        if not isinstance(model, DistillationModel):
            weights = loss_weights or resolve_loss_weights(args)
            batch = example_batch(train_dataset, data_collator) if train_dataset is not None else None
            if batch is not None:  # a size a model cannot take: one sentence now, not an error in the first step
                for role, module in (("student", student), ("teacher", teacher if args.method in METHODS and not isinstance(teacher, CachedTeacher) else None)):
                    if module is not None:
                        check_accepts_inputs(module, role, batch["pixel_values"], self.card_context.dataset_name)
            model = DistillationModel.build(student, teacher, args, weights, batch, train_dataset)
        teacher = teacher if model.needs_teacher else None
        if args.channels_last:  # the student, the method's own modules (projectors, regressors) and the teacher
            for module in (model, teacher):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        self.teacher_check = TeacherCheck(self)
        self.non_finite_guard = NonFiniteLossGuard()
        own = [self.teacher_check, EpochLength(), self.non_finite_guard]
        if hasattr(train_dataset, "set_epoch"):
            own.append(DatasetEpoch(train_dataset))
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=data_collator,
            compute_metrics=compute_metrics or TopkAccuracyMetrics(),
            preprocess_logits_for_metrics=preprocess_logits_for_metrics or ranked_predictions,
            callbacks=[*own, *(callbacks or [])],
            **kwargs,
        )
        self.class_names = class_names
        self.mixup = mixup
        self.teacher = self._prepare_teacher(teacher) if teacher is not None else None
        self._teacher_features = model.method is not None and model.method.needs_teacher_features
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_steps = 0

    def _prepare_teacher(self, teacher: nn.Module) -> nn.Module:
        if isinstance(teacher, CachedTeacher):  # no weights, no computation: nothing for accelerate to place
            return teacher
        teacher.eval()
        teacher.requires_grad_(False)
        # placed on the device (and in the same autocast) for inference only: no DDP wrapper, no gradient buckets
        return self.accelerator.prepare_model(teacher, evaluation_mode=True)

    @property
    def teacher_top1(self) -> float | None:
        """The teacher's top-1 (%) measured at train begin on evaluation data (None before, or without a teacher)."""
        return self.teacher_check.top1

    def check_teacher(self) -> float | None:
        """Measure the teacher's top-1 now (what the train-begin check does); warns when it is near chance."""
        return measure_teacher_top1(self)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Transformers' load, with a checkpoint that does not fit this run named in one sentence."""
        with _resuming(resume_from_checkpoint, "its weights"):
            super()._load_from_checkpoint(resume_from_checkpoint, model)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        with _resuming(checkpoint, "its optimizer or scheduler state"):
            super()._load_optimizer_and_scheduler(checkpoint)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """Trainer.train, where ``resume_from_checkpoint=True`` means the newest *complete* checkpoint."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = resume_target(self.args.output_dir, True)
        if resume_from_checkpoint and isinstance(self.train_dataset, StreamingImageDataset):
            self.train_dataset.resume_from(resume_from_checkpoint, self.args)
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def get_train_dataloader(self):
        """A streamed training set gets its own loader (batches made in the workers, this process's part of the
        stream); any other, the Trainer's."""
        if isinstance(self.train_dataset, StreamingImageDataset):
            return streaming_dataloader(self.train_dataset, self.args)
        return super().get_train_dataloader()

    # ---- optimisation -------------------------------------------------------------------------------------

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Every parameter decays when ``decay_norm_and_bias`` (the references' SGD), else transformers' rule."""
        if self.args.decay_norm_and_bias:
            return [name for name, _ in model.named_parameters()]
        return super().get_decay_parameter_names(model)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The references' epoch milestones when ``lr_decay_epochs`` is set, else transformers' schedulers."""
        if self.lr_scheduler is None and self.args.lr_decay_epochs:
            milestones = milestone_epochs(self.args.lr_decay_epochs, self.args.num_train_epochs)
            self.lr_scheduler = EpochMilestoneLR(optimizer or self.optimizer, milestones, self.args.lr_decay_rate)
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    # ---- the step ------------------------------------------------------------------------------------------

    def model_inputs(self, inputs: dict[str, Any], dataset) -> dict[str, Any]:
        """A batch of ``dataset`` as the models take it: finished on the device when the dataset left it raw
        (``augment_on_device``), and in channels_last when the run uses it."""
        if hasattr(dataset, "device_transform"):
            inputs = dataset.device_transform(inputs)
        if self.args.channels_last and inputs["pixel_values"].dim() == 4:
            inputs = {**inputs, "pixel_values": inputs["pixel_values"].contiguous(memory_format=torch.channels_last)}
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.args.torch_compile:
            # CUDA graphs (torch_compile_mode "reduce-overhead") reuse their output memory at each replay: a new step
            # must say the previous step's outputs are done with (torch.compiler docs); elsewhere a counter increment
            torch.compiler.cudagraph_mark_step_begin()
        inputs = self.model_inputs(inputs, self.train_dataset if model.training else self.eval_dataset)
        teacher_outputs = None
        if model.training:
            # the current 1-based epoch, for methods with schedules (DKD warm-up)
            inputs = {**inputs, "epoch": int(self.state.epoch or 0) + 1}
            if self.mixup is not None:  # before the teacher runs: it sees the student's mixed images
                inputs = self.mixup(inputs, epoch=int(self.state.epoch or 0))
            if self.teacher is not None:
                # a teacher cache replays the outputs of this batch's views: its example indices, this epoch
                keys = ({"index": inputs["index"], "epoch": inputs["epoch"] - 1}
                        if isinstance(self.teacher, CachedTeacher) else {})
                with torch.no_grad():
                    teacher_outputs = self.teacher(inputs["pixel_values"], return_features=self._teacher_features,
                                                   **keys)
        outputs = model(**inputs, teacher_outputs=teacher_outputs)
        if model.training:
            for name, value in outputs["terms"].items():
                self._term_sums[name] = self._term_sums.get(name, 0.0) + value
            self._term_steps += 1
            self.non_finite_guard.record(outputs["terms"], outputs["loss"], self.state.global_step + 1)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Predictions without a batch loss: the evaluation loss is the exact per-example mean computed with the
        metrics (the Trainer's batch-mean losses count padded duplicates under data parallelism)."""
        # the training precision also when evaluate() runs before (or without) train(): the Trainer only prepares
        # (and so autocasts) the model for evaluation when accelerate holds no model yet, and it holds the teacher
        with self.accelerator.autocast():
            if prediction_loss_only or self.compute_metrics is None:
                return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)
            _, logits, labels = super().prediction_step(model, inputs, False, ignore_keys)
        return None, logits.float(), labels

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

    # ---- saving, the card and the Hub ------------------------------------------------------------------------

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints keep the full training state; any other save writes the clean export."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if Path(output_dir).name.startswith(PREFIX_CHECKPOINT_DIR):
            if state_dict is None:  # safetensors stores contiguous tensors only; channels_last weights are not
                state_dict = {k: v.contiguous() for k, v in self.accelerator.unwrap_model(self.model).state_dict().items()}
            return super()._save(output_dir, state_dict)
        if self.args.should_save:
            self.export_model(output_dir)

    def export_model(self, output_dir: str | None = None) -> Path:
        """Write the student as a ``from_pretrained``-loadable model (plus its image processor)."""
        model = self.accelerator.unwrap_model(self.model)
        teacher = provenance_of(self.teacher) if self.teacher is not None else None
        record = distillation_record(model, self.args.method, teacher.source if teacher else None,
                                     self.state.log_history)
        return export_student(model, output_dir or self.args.output_dir, class_names=self.class_names,
                              image_processor=self.processing_class, distillation=record)

    def create_model_card(self, model_name: str | None = None, output_dir: str | None = None, **kwargs: Any) -> None:
        """Write README.md (and the training-curve image) next to the export; Trainer.push_to_hub calls this."""
        if not self.is_world_process_zero():
            return
        output_dir = Path(output_dir or self.args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        curves = plot_training_curves(self.state.log_history, output_dir / CURVES_IMAGE)
        context = self.card_context
        if context.teacher_top1 is None and self.teacher_top1 is not None:
            context = replace(context, teacher_top1=self.teacher_top1,
                              teacher_top1_source="measured by hfkd before distillation")
        student_name = Path(context.student_name or "student").name
        default_name = student_name if self.args.method == "none" else f"{student_name}-{self.args.method}"
        description = describe_trained_model(
            self.accelerator.unwrap_model(self.model), self.args, self.state.log_history,
            model_name=model_name or self.args.hub_model_id or default_name.replace("_", "-"),
            repo=self.args.hub_model_id or str(output_dir),
            curves_image=CURVES_IMAGE if curves is not None else None,
        )
        write_model_card(output_dir, context, description)

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Create (or find) the Hub repo before training; a refusal is one sentence, not a traceback."""
        try:
            super().init_hf_repo(token=token, private=private)
        except Exception as err:  # huggingface_hub raises HTTP, connection and validation errors
            raise repo_creation_error(self.args.hub_model_id or Path(self.args.output_dir).absolute().name, err) from err

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Pushes during training upload the clean export and card (and, by ``hub_strategy``, the checkpoint),
        not the checkpoint's training-state weights that transformers would copy."""
        push_training_snapshot(self, checkpoint_folder)
