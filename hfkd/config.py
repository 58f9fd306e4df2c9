"""The recipe's three argument groups: ModelArguments, DataArguments and DistillationConfig(TrainingArguments).

Defaults are the reference CIFAR-100 recipe of the SimKD / RepDistiller toolboxes (spec section 4.1): SGD with
momentum 0.9, weight decay 5e-4 on every parameter, lr 0.05, batch 64, 240 epochs, lr x0.1 after epochs 150, 180
and 210, evaluation every epoch. Everything can be overridden in a recipe or on the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .errors import RecipeError
from .recipe_ranges import check_ranges

SPEED_SETTINGS = ("auto", "off")


@dataclass
class ModelArguments:
    """Which student to train and which teacher to learn from."""

    model_name_or_path: str = field(
        default=None,
        metadata={
            "help": "The student: a CIFAR zoo name (resnet8x4, vgg8, ShuffleV2_1_5, ...), a timm name, a transformers "
            "image-classification model id or directory, or an hfkd export."
        },
    )
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "The teacher: an hfkd export directory or Hub id, a zoo/timm/transformers model, or a reference "
            ".pth checkpoint (SimKD / RepDistiller release format). Required by every method except 'none'."
        },
    )
    teacher_arch: str | None = field(
        default=None,
        metadata={
            "help": "Architecture of a reference .pth teacher when its folder name does not say it (e.g. resnet32x4)."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow transformers models that ship their own code (off unless the recipe turns it on)."},
    )
    teacher_cache: str | None = field(
        default=None,
        metadata={
            "help": "A teacher cache (a folder or Hub dataset id written by `hfkd cache-teacher`): logit methods read "
            "the teacher's logits for each training view from it and never load the teacher. `hfkd cache-teacher` "
            "writes the cache here."
        },
    )
    teacher_cache_topk: int | None = field(
        default=None,
        metadata={
            "help": "`hfkd cache-teacher`: store only the k largest logits of every view (and its log-sum-exp); "
            "training rebuilds the rest FKD-style. Default: every logit."
        },
    )
    teacher_cache_dtype: str = field(
        default="float16",
        metadata={"help": "`hfkd cache-teacher`: the stored logits' precision, 'float16' or 'float32'."},
    )

    def __post_init__(self) -> None:
        if not self.model_name_or_path:
            raise RecipeError("the recipe must name the student with 'model_name_or_path' (e.g. resnet8x4)")
        check_ranges(self)
        if self.teacher_cache_dtype not in ("float16", "float32"):
            raise RecipeError(f"teacher_cache_dtype {self.teacher_cache_dtype!r} is not one of 'float16', 'float32'")


@dataclass
class DataArguments:
    """Which images to train and evaluate on (keys follow the transformers image-classification example)."""

    dataset_name: str | None = field(
        default=None,
        metadata={
            "help": "A Hub dataset id (uoft-cs/cifar100), a local dataset directory (parquet files or save_to_disk), "
            "or a dataset shipped with hfkd ('builtin:cifar10-quickstart')."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset configuration name."})
    train_dir: str | None = field(default=None, metadata={"help": "An image folder for training (class subfolders)."})
    validation_dir: str | None = field(default=None, metadata={"help": "An image folder for evaluation."})
    image_column_name: str | None = field(
        default=None, metadata={"help": "The image column; detected from the dataset features when not given."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "The label column; detected from the dataset features when not given."}
    )
    train_split: str = field(default="train", metadata={"help": "The split to train on."})
    eval_split: str | None = field(
        default=None, metadata={"help": "The split to evaluate on; 'validation', else 'test' when not given."}
    )
    train_val_split: float | None = field(
        default=None,
        metadata={
            "help": "When the dataset has no validation or test split, hold out this fraction of the training split "
            "(class-stratified, seeded) for evaluation, e.g. 0.1."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N training examples (for quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Keep only the first N evaluation examples (for quick runs)."}
    )
    transform_preset: str = field(
        default="auto",
        metadata={
            "help": "Augmentation and normalisation: 'cifar' (random crop 32 pad 4 + flip), 'imagenet' "
            "(RandomResizedCrop 224 + flip; resize 256 + center crop 224), or 'auto' (cifar for images up to 64 "
            "pixels, imagenet otherwise)."
        },
    )
    augment_on_device: bool = field(
        default=False,
        metadata={
            "help": "For the 'cifar' preset: ship raw uint8 batches and crop / flip / normalise them (and draw CRD's "
            "negatives) on the training device, a batch at a time. Same draws as on the CPU; faster on a GPU."
        },
    )
    image_mean: list[float] | None = field(
        default=None, metadata={"help": "Normalisation mean; taken from the dataset's known statistics when not given."}
    )
    image_std: list[float] | None = field(
        default=None, metadata={"help": "Normalisation std; taken from the dataset's known statistics when not given."}
    )
    # --- augmentation from timm (timm's train.py names; hfkd.data.augmentation) ---
    auto_augment: str | None = field(
        default=None,
        metadata={
            "help": "timm AutoAugment / RandAugment / AugMix policy for the 'imagenet' preset, e.g. "
            "'rand-m9-mstd0.5-inc1' (DeiT) or 'original'; none by default. Turns color_jitter off, as in timm."
        },
    )
    color_jitter: float = field(
        default=0.0, metadata={"help": "timm color jitter (brightness, contrast, saturation) for 'imagenet'; 0: off."}
    )
    reprob: float = field(
        default=0.0,
        metadata={"help": "timm random-erasing probability for 'imagenet' (per-pixel normal noise, timm's 'pixel')."},
    )
    train_crop_scale: list[float] | None = field(
        default=None,
        metadata={"help": "RandomResizedCrop area range [min, max] for 'imagenet' (default [0.08, 1.0])."},
    )
    interpolation: str = field(
        default="bilinear",
        metadata={"help": "Resize interpolation for 'imagenet': bilinear, bicubic, nearest, or random (training)."},
    )
    mixup_alpha: float = field(
        default=0.0, metadata={"help": "timm Mixup: Beta(alpha, alpha) mixing of batch pairs; 0: off (DeiT: 0.8)."}
    )
    cutmix_alpha: float = field(
        default=0.0, metadata={"help": "timm Mixup: CutMix with Beta(alpha, alpha) box areas; 0: off (DeiT: 1.0)."}
    )
    mixup_prob: float = field(
        default=1.0, metadata={"help": "timm Mixup: probability that a batch is mixed at all."}
    )
    mixup_switch_prob: float = field(
        default=0.5, metadata={"help": "timm Mixup: probability of CutMix rather than Mixup when both are on."}
    )
    # --- streaming (hfkd.data.streaming) ---
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the training split (a Hub id or a local folder of parquet shards) instead of downloading "
            "and preparing it: shuffled with a buffer, split across processes, decoded in DataLoader workers, "
            "resumable mid-epoch. The eval split is streamed once into datasets' cache. Not with CRD."
        },
    )
    shuffle_buffer_size: int = field(
        default=10000, metadata={"help": "Streaming: examples in the shuffle buffer (datasets' buffer_size)."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "'imagenet' preset: the side of the training crop and of the evaluation center crop (after a "
            "resize to image_size / 0.875); default the student's declared input size, else 224."
        },
    )
    decode_on_device: bool = field(
        default=False,
        metadata={
            "help": "'imagenet' preset: DataLoader workers ship the encoded JPEGs and the training device decodes a "
            "batch at once (torchvision.io.decode_jpeg: nvJPEG on a GPU, the CPU otherwise), then crops, flips and "
            "normalises there. RandomResizedCrop + flip (+ mixup) only; not with streaming."
        },
    )

    def __post_init__(self) -> None:
        if self.dataset_name is None and self.train_dir is None:
            raise RecipeError("the recipe must name its data with 'dataset_name' or 'train_dir'")
        if self.transform_preset not in ("auto", "cifar", "imagenet"):
            raise RecipeError(
                f"transform_preset {self.transform_preset!r} is not one of 'auto', 'cifar', 'imagenet'"
            )
        check_ranges(self)
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is not None and len(value) != 3:
                raise RecipeError(f"{name} must have 3 values (one per RGB channel), got {list(value)}")
        # the data package imports torch and datasets: imported on use
        from .data.augmentation import check_augmentation
        from .data.streaming import check_streaming

        check_augmentation(self)
        check_streaming(self)


@dataclass
class DistillationConfig(TrainingArguments):
    """TrainingArguments plus the distillation loss ``cls * CE + div * KD_T + beta * method``.

    Field defaults below that differ from transformers' reproduce the reference CIFAR recipe (spec 4.1).
    """

    method: str = field(
        default="kd",
        metadata={"help": "Distillation method (kd, simkd, spherical, ...); 'none' trains the model alone."},
    )
    cls: float | None = field(
        default=None,
        metadata={"help": "Weight of the cross-entropy with the labels; the method's default if unset (1, SimKD 0)."},
    )
    div: float | None = field(
        default=None,
        metadata={
            "help": "Weight of the KD term T^2 * KL(teacher || student) at kd_temperature; the method's default if "
            "unset (1; SimKD, DKD and DIST 0)."
        },
    )
    beta: float | None = field(
        default=None, metadata={"help": "Weight of the method's own loss; the method's published default if unset."}
    )
    kd_temperature: float = field(default=4.0, metadata={"help": "Temperature T of the KD term (reference: 4)."})
    # --- method hyperparameters (defaults from spec sections 2, 3 and 10) ---
    hint_layer: int = field(default=1, metadata={"help": "FitNet: feature index of the hint (SimKD 1, RepDistiller 2)."})
    simkd_factor: int = field(default=2, metadata={"help": "SimKD: projector bottleneck factor f (2, 4 or 8)."})
    crd_feat_dim: int = field(default=128, metadata={"help": "CRD: embedding dimension."})
    crd_nce_k: int = field(default=16384, metadata={"help": "CRD: negatives per example (lowered for small data)."})
    crd_nce_t: float = field(default=0.07, metadata={"help": "CRD: temperature of the NCE scores."})
    crd_nce_m: float = field(default=0.5, metadata={"help": "CRD: momentum of the memory-bank update."})
    crd_mode: str = field(
        default="exact", metadata={"help": "CRD: positive is the example itself ('exact') or its class ('relax')."}
    )
    spherical_multiplier: float = field(
        default=2.0, metadata={"help": "Spherical KD: logits are layer-normalised, then multiplied by this."}
    )
    dkd_alpha: float = field(default=1.0, metadata={"help": "DKD: weight of target-class KD (TCKD)."})
    dkd_beta: float = field(default=8.0, metadata={"help": "DKD: weight of non-target-class KD (NCKD)."})
    dkd_warmup_epochs: int = field(default=20, metadata={"help": "DKD: epochs of linear warm-up of its loss."})
    dist_beta: float = field(default=2.0, metadata={"help": "DIST: weight of the inter-class relation term."})
    dist_gamma: float = field(default=2.0, metadata={"help": "DIST: weight of the intra-class relation term."})
    logit_standardization: bool = field(
        default=False,
        metadata={
            "help": "Standardise student and teacher logits (z-score per sample) before the KD term of 'kd' and the "
            "logits of 'dkd' (Sun et al., CVPR 2024); method 'logit_std' always does."
        },
    )
    deit_distillation: str = field(
        default="hard",
        metadata={
            "help": "DeiT (a DeiT-with-teacher student): 'hard', the distillation head learns the teacher's argmax "
            "(defaults cls 0.5, beta 0.5), or 'soft', it learns the teacher's softened outputs by the KD term at "
            "kd_temperature (defaults cls 0.9, div 0.1; the paper's temperature is 3, so set kd_temperature: 3)."
        },
    )
    lr_decay_epochs: list[float] | None = field(
        default_factory=lambda: [150, 180, 210],
        metadata={
            "help": "Epoch milestones of the reference step schedule: in epoch e (1-based) the lr is "
            "learning_rate * lr_decay_rate ** #{m : e > m}. All below 1: fractions of num_train_epochs, so a shortened "
            "run keeps the reference's shape ([0.625, 0.75, 0.875] are its 150/180/210 of 240). Empty or null uses "
            "lr_scheduler_type instead."
        },
    )
    lr_decay_rate: float = field(default=0.1, metadata={"help": "Factor applied to the lr at each milestone."})
    speed_settings: str = field(
        default="off",
        metadata={
            "help": "'auto': when the run starts, hfkd turns on the speed settings the device runs faster with: bf16 "
            "autocast where it computes bf16 natively (a GPU with bf16, a CPU with AMX or AVX512-BF16), and "
            "channels_last (x86 CPUs; GPUs with bf16/fp16); the choice is logged and recorded with the results. "
            "'off': only bf16 / fp16 / channels_last as set. Settings set to true are never turned off."
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={"help": "Run conv nets (student, teacher, inputs) in channels_last memory format (faster on CPU/GPU)."},
    )
    cpu_threads: int | None = field(
        default=None,
        metadata={
            "help": "Torch threads per process when training on the CPU. Default: the CPUs this process may use, "
            "divided by the processes on this machine (`accelerate launch` without a config would force 1)."
        },
    )
    decay_norm_and_bias: bool = field(
        default=True,
        metadata={
            "help": "Apply weight decay to every parameter, BatchNorm and biases included, as the references do. "
            "False gives the transformers convention (no decay on biases and norms)."
        },
    )

    # --- reporting ---
    reference_top1: float | None = field(
        default=None,
        metadata={"help": "A published top-1 (%) for this setting; `hfkd sweep` shows it beside the measured one."},
    )
    reference_source: str | None = field(
        default=None, metadata={"help": "Where reference_top1 comes from (paper, table, README)."}
    )
    license: str | None = field(
        default=None,
        metadata={"help": "The exported model's license as a Hub license id (e.g. apache-2.0, mit), for its card."},
    )

    # --- transformers defaults replaced by the reference CIFAR recipe (spec 4.1) ---
    learning_rate: float = field(default=0.05, metadata={"help": "Initial learning rate (reference CIFAR: 0.05)."})
    weight_decay: float = field(default=5e-4, metadata={"help": "Weight decay (reference CIFAR: 5e-4)."})
    optim: str = field(default="sgd", metadata={"help": "Optimizer (reference: sgd with momentum 0.9)."})
    optim_args: str | None = field(default="momentum=0.9", metadata={"help": "Optimizer arguments."})
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping norm; 0 = none, as in the references (transformers: 1.0)."}
    )
    num_train_epochs: float = field(default=240.0, metadata={"help": "Epochs (reference CIFAR: 240)."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Batch size per device (reference 64)."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "Evaluation batch size per device."})
    eval_strategy: str = field(default="epoch", metadata={"help": "Evaluate every epoch (top-1 / top-5)."})
    save_strategy: str = field(default="epoch", metadata={"help": "Checkpoint every epoch."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept (the latest)."})
    logging_strategy: str = field(default="epoch", metadata={"help": "Log the loss terms every epoch."})
    logging_nan_inf_filter: bool = field(
        default=False, metadata={"help": "Hide nan/inf losses from the logs (off: a nan loss must be seen)."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "hfkd's collator picks the columns it needs."})
    output_dir: str | None = field(default="outputs/run", metadata={"help": "Where checkpoints and the export go."})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Train into an output_dir that already holds a run (its files are replaced)."},
    )
    spherical_alphas: list[float] | None = field(
        default=None,
        metadata={
            "help": "Spherical KD: the paper's alpha of (1 - alpha) * CE + alpha * KD per phase, e.g. [0.9, 0.5, 0.1] "
            "with spherical_alpha_epochs [60, 80] (its ImageNet run); sets cls and div, which stay unset."
        },
    )
    spherical_alpha_epochs: list[int] | None = field(
        default=None,
        metadata={"help": "Spherical KD: epochs after which the next of spherical_alphas applies (epoch e > m)."},
    )

    def __post_init__(self) -> None:
        # imported here: the method registry imports model code, and config must stay importable on its own
        from .methods import known_method_names

        names = known_method_names()
        if self.method not in names:
            raise RecipeError(f"method {self.method!r} is unknown; choose one of {', '.join(names)}")
        check_ranges(self)  # every numeric key, hfkd's and the Trainer's, before transformers reads any
        if self.speed_settings not in SPEED_SETTINGS:
            raise RecipeError(
                f"speed_settings {self.speed_settings!r} is not one of {', '.join(repr(v) for v in SPEED_SETTINGS)}"
            )
        if self.crd_mode not in ("exact", "relax"):
            raise RecipeError(f"crd_mode {self.crd_mode!r} is not one of 'exact', 'relax'")
        if self.deit_distillation not in ("hard", "soft"):
            raise RecipeError(f"deit_distillation {self.deit_distillation!r} is not one of 'hard', 'soft'")
        if self.hub_token:
            # TrainingArguments are pickled into every checkpoint (training_args.bin): a token there would leak
            raise RecipeError(
                "hub_token must not be set in a recipe or on the command line, because checkpoints store the "
                "training arguments; log in with `hf auth login` or set the HF_TOKEN environment variable"
            )
        if self.lr_decay_epochs:
            milestones = sorted(float(m) for m in self.lr_decay_epochs)
            if milestones[0] < 1 <= milestones[-1]:
                raise RecipeError(
                    f"lr_decay_epochs {milestones} mixes fractions of the run (below 1) and epochs; give all as epochs "
                    f"or all as fractions"
                )
            self.lr_decay_epochs = [int(m) if m.is_integer() else m for m in milestones]
        super().__post_init__()

