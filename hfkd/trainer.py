"""DistillationTrainer: ``transformers.Trainer`` with a frozen teacher and ``cls*CE + div*KD_T + beta*method``.

Only Trainer's hook points are overridden; the training loop, callbacks, checkpointing, mixed precision and
distributed set-up are transformers' and Accelerate's own.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy, SaveStrategy, has_length
from transformers.utils.hub import PushInProgress, hf_api

from .checkpoints import latest_complete_checkpoint
from .config import DistillationConfig
from .data.collate import collate_image_batch
from .distillation_model import DistillationModel, LossWeights
from .errors import HubError, IncompatibleSetupError, RecipeError, TrainingDivergedError
from .export import export_student
from .methods import METHODS, NO_DISTILLATION, build_method
from .metrics import TopkAccuracyMetrics, ranked_predictions
from .model_card import CURVES_IMAGE, ModelCardContext, plot_training_curves, render_model_card
from .models import TransformersFeatureClassifier
from .results import summarize_evaluations
from .schedule import EpochMilestoneLR

logger = logging.getLogger(__name__)
# distributed set-ups whose gradients after backward are ordinary tensors, equal on every process
PLAIN_GRADIENTS = (DistributedType.NO, DistributedType.MULTI_GPU, DistributedType.MULTI_CPU)
# how often (optimizer steps) the device-side non-finite flags are read back on an accelerator; every step on a CPU
DIVERGENCE_CHECK_STEPS = 25
# the teacher is checked on at most this many evaluation examples (spread over the set) before distillation
TEACHER_CHECK_EXAMPLES = 2048
# where checkpoint folders are copied while they upload (a "_" name: never part of a model push)
PUSH_STAGING = "_push_staging"


class _DatasetEpoch(TrainerCallback):
    """Tells the training set which epoch starts, so its keyed random draws (augmentation, CRD negatives) advance."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch or 0))


def example_batch(dataset, collator, size: int = 2) -> dict[str, torch.Tensor]:
    """A small collated (and, for on-device datasets, transformed) training batch that sizes method modules."""
    indices = list(range(min(size, len(dataset))))
    items = dataset.__getitems__(indices) if hasattr(dataset, "__getitems__") else [dataset[i] for i in indices]
    batch = collator(items)
    return dataset.device_transform(batch) if hasattr(dataset, "device_transform") else batch


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
        card_context: ModelCardContext | None = None,
        **kwargs: Any,
    ) -> None:
        args = args if args is not None else DistillationConfig(output_dir="outputs/run")
        data_collator = data_collator or collate_image_batch
        if train_dataset is not None and args.method in METHODS:
            train_dataset = METHODS[args.method].prepare_train_dataset(train_dataset, args)
        if isinstance(model, DistillationModel):
            distillation_model = model
        else:
            distillation_model = self._build_distillation_model(model, teacher, args, train_dataset, data_collator)
        if distillation_model.needs_teacher and teacher is None:
            raise RecipeError(f"method {args.method!r} needs a teacher; set 'teacher' in the recipe")
        if args.channels_last:  # the student and the method's own modules (projectors, regressors), and the teacher
            distillation_model = distillation_model.to(memory_format=torch.channels_last)
            teacher = teacher.to(memory_format=torch.channels_last) if teacher is not None else None
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
        # read once: unwrapping the prepared model every step costs a walk of its modules
        method = distillation_model.method
        self._teacher_features = method is not None and method.needs_teacher_features
        if hasattr(self.train_dataset, "set_epoch"):
            self.add_callback(_DatasetEpoch(self.train_dataset))
        self.class_names = class_names
        self.card_context = card_context or ModelCardContext()
        self._term_sums: dict[str, torch.Tensor] = {}
        self._term_steps = 0
        # first step (0 = none yet) at which a loss term was not finite, and which terms: kept on the device
        self._divergence: tuple[list[str], torch.Tensor, torch.Tensor] | None = None
        self._updates_per_epoch: int | None = None
        self.teacher_top1: float | None = None

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
        method = build_method(args.method, student, teacher, args, batch, train_dataset=train_dataset)
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

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """Trainer.train, where ``resume_from_checkpoint=True`` means the latest *complete* checkpoint."""
        if resume_from_checkpoint is True:
            latest = latest_complete_checkpoint(self.args.output_dir)
            if latest is None:
                raise RecipeError(f"there is no complete checkpoint in {self.args.output_dir!r} to resume from")
            resume_from_checkpoint = str(latest)
        self.teacher_top1 = self.check_teacher()
        if self.teacher_top1 is not None and self.card_context.teacher_top1 is None:
            self.card_context.teacher_top1 = self.teacher_top1
            self.card_context.teacher_top1_source = "measured by hfkd before distillation"
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

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

    def _device_transform(self, inputs: dict[str, Any], training: bool) -> dict[str, Any]:
        """Finish a batch the dataset left raw (``augment_on_device``), on the training device."""
        dataset = self.train_dataset if training else self.eval_dataset
        if hasattr(dataset, "device_transform"):
            inputs = dataset.device_transform(inputs)
        return inputs

    def _prepare_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return self._device_transform(super()._prepare_inputs(inputs), self.model.training)

    @torch.no_grad()
    def _teacher_forward(self, pixel_values: torch.Tensor):
        return self.teacher(pixel_values, return_features=self._teacher_features)

    def _get_grad_norm(self, model, grad_norm=None):
        """The gradient norm the Trainer logs. When nothing was clipped and the gradients are plain local tensors
        (no loss scaling, DeepSpeed, FSDP or XLA; under DDP they are already averaged over the processes), it is
        one fused reduction on the device, not accelerate's clip at max_norm=inf, which also rescales every
        gradient by 1 and took 2.4x the host time per step (573 against 239 us, BENCHMARKS.md)."""
        plain = self.accelerator.scaler is None and self.accelerator.distributed_type in PLAIN_GRADIENTS
        if grad_norm is not None or not plain or self._has_mixed_mesh_grads(model):
            return super()._get_grad_norm(model, grad_norm)
        # the optimizer's parameters are the ones that train (student and method modules): cheaper than a module walk
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads)

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
            self._track_divergence(outputs)
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    # ---- no silent failure ---------------------------------------------------------------------------------

    def _track_divergence(self, outputs: dict) -> None:
        """Record, on the device, the first step whose loss terms are not finite (no host sync here)."""
        names = [*outputs["terms"], "loss"]
        values = torch.stack([*outputs["terms"].values(), outputs["loss"].detach().float()])
        bad = ~torch.isfinite(values)
        step = self.state.global_step + 1
        if self._divergence is None or self._divergence[0] != names:
            zero = torch.zeros((), dtype=torch.int64, device=values.device)
            self._divergence = (names, zero, torch.zeros_like(bad))
        _, first, terms = self._divergence
        hit = bad.any() & (first == 0)
        first.copy_(torch.where(hit, torch.full_like(first, step), first))
        terms.copy_(torch.where(hit, bad, terms))
        if self.args.device.type == "cpu" or step % DIVERGENCE_CHECK_STEPS == 0:
            self._raise_if_diverged()

    def _raise_if_diverged(self) -> None:
        if self._divergence is None:
            return
        names, first, terms = self._divergence
        step = int(first)
        if step == 0:
            return
        bad = [name for name, flag in zip(names, terms.tolist()) if flag]
        term = next((name for name in bad if name != "loss"), "loss")
        latest = latest_complete_checkpoint(self.args.output_dir)
        kept = f"the last checkpoint, {latest}, is from before it" if latest else "no checkpoint was written"
        raise TrainingDivergedError(
            f"training stopped: the loss term {term!r} became nan or inf at step {step}; {kept}; lower the "
            f"learning rate or the term's weight, or check the data"
        )

    def _save_checkpoint(self, model, trial) -> None:
        self._raise_if_diverged()  # never write a checkpoint of weights that met a nan or inf loss
        super()._save_checkpoint(model, trial)

    def check_teacher(self) -> float | None:
        """The teacher's top-1 (%) on up to TEACHER_CHECK_EXAMPLES evaluation examples, with a warning when it
        is near chance (a wrong checkpoint, normalisation or label order). None when there is nothing to check."""
        if self.teacher is None or self.eval_dataset is None:
            return None
        size = len(self.eval_dataset)
        stride = max(1, size // TEACHER_CHECK_EXAMPLES)
        subset = torch.utils.data.Subset(self.eval_dataset, list(range(0, size, stride))[:TEACHER_CHECK_EXAMPLES])
        loader = torch.utils.data.DataLoader(
            subset, batch_size=self.args.per_device_eval_batch_size, collate_fn=self.data_collator
        )
        correct = torch.zeros((), dtype=torch.int64, device=self.args.device)
        total = 0
        with torch.no_grad():
            for batch in loader:
                batch = self._device_transform(Trainer._prepare_inputs(self, batch), training=False)
                pixels = batch["pixel_values"]
                if self.args.channels_last and pixels.dim() == 4:
                    pixels = pixels.contiguous(memory_format=torch.channels_last)
                logits = self.teacher(pixels).logits
                correct += (logits.argmax(-1) == batch["labels"]).sum()
                total += len(batch["labels"])
        top1 = 100.0 * int(correct) / max(total, 1)
        num_classes = _class_count(self.teacher) or 1
        chance = 100.0 / num_classes
        if top1 < 2 * chance:
            logger.warning(
                "the teacher reaches %.1f %% top-1 on %d evaluation examples, near chance (%.1f %% for %d classes): "
                "check its checkpoint, its input normalisation and its label order before distilling from it",
                top1, total, chance, num_classes,
            )
        return top1

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

    # ---- logging ---------------------------------------------------------------------------------------------

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds each loss term (mean since the last log, over all processes) and the best eval top-1 so far."""
        if "loss" in logs:
            self._raise_if_diverged()  # logging reads values back anyway: check the flags at no extra cost
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

    def create_model_card(self, model_name: str | None = None, output_dir: str | None = None, **kwargs: Any) -> None:
        """Write README.md (and the training-curve image) next to the export; Trainer.push_to_hub calls this."""
        if not self.is_world_process_zero():
            return
        output_dir = Path(output_dir or self.args.output_dir)
        model = self.accelerator.unwrap_model(self.model)
        method, weights = model.method, model.weights
        student = model.student
        native = isinstance(student, TransformersFeatureClassifier) and (method is None or method.export_head() is None)
        if isinstance(student, TransformersFeatureClassifier):
            architecture = f"transformers {student.model.config.model_type}"
        else:
            architecture = getattr(student, "hfkd_architecture", None) or type(student).__name__
        head = method.export_head() if method is not None else None
        parameters = sum(p.numel() for p in student.parameters()) + (
            sum(p.numel() for p in head[1].parameters()) if head is not None else 0
        )
        repo = self.args.hub_model_id or str(output_dir)
        remote = "" if native else ", trust_remote_code=True"
        usage = (
            "from transformers import pipeline\n\n"
            f'classifier = pipeline("image-classification", model="{repo}"{remote})\n'
            'print(classifier("image.png"))'
        )
        curves = plot_training_curves(self.state.log_history, output_dir / CURVES_IMAGE)
        card = render_model_card(
            context=self.card_context,
            model_name=model_name or self.args.hub_model_id or self._default_model_name(),
            method=self.args.method,
            paper=method.paper if method is not None else None,
            loss_formula=self._loss_formula(),
            results=summarize_evaluations(self.state.log_history),
            num_classes=student.num_classes,
            student_architecture=architecture,
            student_parameters=parameters,
            head_note="backbone + the method's prediction head (the teacher's reused classifier)" if head else None,
            schedule=self._schedule_summary(),
            usage=usage,
            curves_image=CURVES_IMAGE if curves is not None else None,
            native_transformers=native,
        )
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "README.md").write_text(card)

    def _default_model_name(self) -> str:
        student = self.card_context.student_name or "student"
        name = Path(student).name if self.args.method == NO_DISTILLATION else f"{Path(student).name}-{self.args.method}"
        return name.replace("_", "-")

    def _loss_formula(self) -> str:
        w = self.accelerator.unwrap_model(self.model).weights
        terms = [f"{w.cls:g}·CE" if w.cls else "", f"{w.div:g}·KD(T={w.kd_temperature:g})" if w.div else ""]
        if w.beta and self.args.method != NO_DISTILLATION:
            terms.append(f"{w.beta:g}·{self.args.method}")
        return " + ".join(t for t in terms if t) or "0"

    def _schedule_summary(self) -> str:
        a = self.args
        lr = f"lr {a.learning_rate:g}"
        if a.lr_decay_epochs:
            lr += f", ×{a.lr_decay_rate:g} after epochs {', '.join(str(m) for m in a.lr_decay_epochs)}"
        else:
            lr += f" ({a.lr_scheduler_type.value if hasattr(a.lr_scheduler_type, 'value') else a.lr_scheduler_type})"
        optim = a.optim.value if hasattr(a.optim, "value") else a.optim
        precision = "bf16" if a.bf16 else "fp16" if a.fp16 else "fp32"
        return (
            f"{a.num_train_epochs:g} epochs, batch {a.per_device_train_batch_size} × {a.world_size} process(es), "
            f"{optim} ({a.optim_args or 'defaults'}), {lr}, weight decay {a.weight_decay:g}, {precision}"
        )

    # ---- the Hub ------------------------------------------------------------------------------------------

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Create (or find) the Hub repo before training; a refusal is one sentence, not a traceback."""
        try:
            super().init_hf_repo(token=token, private=private)
        except Exception as err:  # huggingface_hub raises HTTP, connection and validation errors
            repo = self.args.hub_model_id or Path(self.args.output_dir).absolute().name
            raise HubError(
                f"could not create or reach the Hub repo {repo!r} ({_first_line(err)}); check the token "
                f"(`hf auth login` or HF_TOKEN), or train without push_to_hub and run `hfkd push` later"
            ) from err

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """During training, push the clean export and card (not the checkpoint's training-state weights).

        Transformers copies the checkpoint's model file into output_dir before uploading it; an hfkd checkpoint
        holds the student together with the method's modules, so the current student is exported instead. With
        hub_strategy ``checkpoint`` / ``all_checkpoints`` the checkpoint folder itself is uploaded as well, so a
        run can resume from the Hub.
        """
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        output_dir = self.args.output_dir
        self.export_model(output_dir)
        self.create_model_card(model_name=self.hub_model_id.split("/")[-1])
        if self.args.save_strategy == SaveStrategy.STEPS:
            message = f"Training in progress, step {self.state.global_step}"
        else:
            message = f"Training in progress, epoch {int(self.state.epoch)}"
        jobs = [
            hf_api().upload_folder(
                repo_id=self.hub_model_id, folder_path=output_dir, commit_message=message, token=self.args.hub_token,
                run_as_future=True, ignore_patterns=["_*", f"{PREFIX_CHECKPOINT_DIR}-*"], revision=self.args.hub_revision,
            )
        ]
        if self.args.hub_strategy in (HubStrategy.CHECKPOINT, HubStrategy.ALL_CHECKPOINTS):
            name = Path(checkpoint_folder).name
            path_in_repo = "last-checkpoint" if self.args.hub_strategy == HubStrategy.CHECKPOINT else name
            # upload a staged copy: save_total_limit may delete the checkpoint folder before an async upload ends
            staging = Path(output_dir) / PUSH_STAGING / name
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(checkpoint_folder, staging)
            job = hf_api().upload_folder(
                repo_id=self.hub_model_id, folder_path=str(staging), path_in_repo=path_in_repo,
                commit_message=message + ", checkpoint", token=self.args.hub_token, run_as_future=True,
                revision=self.args.hub_revision,
            )
            job.add_done_callback(lambda _: shutil.rmtree(staging, ignore_errors=True))
            jobs.append(job)
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress(jobs)
        else:
            self.push_in_progress.jobs.extend(jobs)

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


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
