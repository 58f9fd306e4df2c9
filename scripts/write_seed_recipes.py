"""Write the CIFAR-100 recipes of the SimKD seed table and the ImageNet SimKD recipe under recipes/.

    python scripts/write_seed_recipes.py

Loss weights are those of SimKD's scripts/run_distill.sh (spec section 2: every baseline keeps cls 1, div 1 and adds
its own beta; SimKD uses cls 0, div 0, beta 1), the RepDistiller scripts' beta for the methods only it has
(spec section 3), and the papers' settings for the later methods (spec section 10).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "recipes"
TEACHER = "resnet32x4"
# the small-model rule of the references: these students are trained with lr 0.01 (spec 4.1)
SMALL_MODEL_LR = {"ShuffleV2_1_5": 0.01, "MobileNetV2": 0.01, "ShuffleV1": 0.01, "ShuffleV2": 0.01}

# published top-1 (%) on CIFAR-100 with the resnet32x4 teacher, SimKD README (spec sections 7 and 10.5)
SIMKD_README = {
    "resnet8x4": {"student": 73.09, "kd": 74.42, "fitnet": 74.32, "at": 75.07, "sp": 74.29, "vid": 74.55,
                  "crd": 75.59, "srrl": 75.39, "semckd": 76.23, "simkd_f2": 78.08, "simkd_f4": 77.88,
                  "simkd_f8": 76.73},
    "vgg8": {"student": 70.46, "simkd_f2": 75.76, "simkd_f4": 75.62, "simkd_f8": 74.74},
    "ShuffleV2_1_5": {"student": 74.15, "simkd_f2": 79.54, "simkd_f4": 79.48, "simkd_f8": 78.96},
}
OTHER_PUBLISHED = {  # resnet32x4 -> resnet8x4 only; source in the comment
    ("resnet8x4", "dkd"): (76.32, "DKD paper (Zhao et al., CVPR 2022), spec 10.3"),
    ("resnet8x4", "dist"): (76.31, "DIST paper (Huang et al., NeurIPS 2022), spec 10.4"),
    ("resnet8x4", "logit_std"): (76.62, "logit standardization paper (Sun et al., CVPR 2024), spec 10.2"),
    ("resnet8x4", "pkt"): (73.64, "CRD benchmark (no KD term), spec 10.5"),
    ("resnet8x4", "rkd"): (71.90, "CRD benchmark (no KD term), spec 10.5"),
    ("resnet8x4", "cc"): (72.97, "CRD benchmark (no KD term), spec 10.5"),
    ("resnet8x4", "nst"): (73.30, "CRD benchmark (no KD term), spec 10.5"),
}

# method -> (description, recipe keys)
METHODS = {
    "kd": ("vanilla KD (Hinton et al., 2015)", {"cls": 1, "div": 1, "beta": 0}),
    "fitnet": ("FitNet hint at feature 1 (SimKD's default layer)", {"cls": 1, "div": 1, "beta": 100, "hint_layer": 1}),
    "at": ("attention transfer (Zagoruyko & Komodakis, ICLR 2017)", {"cls": 1, "div": 1, "beta": 1000}),
    "sp": ("similarity-preserving KD (Tung & Mori, ICCV 2019)", {"cls": 1, "div": 1, "beta": 3000}),
    "vid": ("variational information distillation (Ahn et al., CVPR 2019)", {"cls": 1, "div": 1, "beta": 1}),
    "crd": ("contrastive representation distillation (Tian et al., ICLR 2020)",
            {"cls": 1, "div": 1, "beta": 0.8, "crd_nce_k": 16384, "crd_mode": "exact"}),
    "srrl": ("SRRL (Yang et al., ICLR 2021)", {"cls": 1, "div": 1, "beta": 1}),
    "semckd": ("SemCKD (Chen et al., AAAI 2021)", {"cls": 1, "div": 1, "beta": 400}),
    "simkd_f2": ("SimKD, f = 2 (Chen et al., CVPR 2022)", {"method": "simkd", "cls": 0, "div": 0, "beta": 1,
                                                           "simkd_factor": 2}),
    "simkd_f4": ("SimKD, f = 4", {"method": "simkd", "cls": 0, "div": 0, "beta": 1, "simkd_factor": 4}),
    "simkd_f8": ("SimKD, f = 8", {"method": "simkd", "cls": 0, "div": 0, "beta": 1, "simkd_factor": 8}),
    "spherical": ("Spherical KD, published version (Guo et al., arXiv 2010.07485), multiplier 2",
                  {"cls": 1, "div": 1, "beta": 0, "spherical_multiplier": 2.0}),
    "dkd": ("decoupled KD (Zhao et al., CVPR 2022): alpha 1, beta 8, T 4, 20 warm-up epochs",
            {"cls": 1, "div": 0, "beta": 1, "dkd_alpha": 1.0, "dkd_beta": 8.0, "dkd_warmup_epochs": 20}),
    "dist": ("DIST (Huang et al., NeurIPS 2022): beta = gamma = 2, tau 4",
             {"cls": 1, "div": 0, "beta": 1, "dist_beta": 2.0, "dist_gamma": 2.0}),
    "logit_std": ("KD with logit standardization (Sun et al., CVPR 2024): CE 0.1, KD 9, base temperature 2",
                  {"cls": 0.1, "div": 9, "beta": 0, "kd_temperature": 2.0}),
    "pkt": ("probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018)", {"cls": 1, "div": 1, "beta": 30000}),
    "rkd": ("relational KD (Park et al., CVPR 2019)", {"cls": 1, "div": 1, "beta": 1}),
    "cc": ("correlation congruence (Peng et al., ICCV 2019)", {"cls": 1, "div": 1, "beta": 0.02}),
    "nst": ("neuron selectivity transfer (Huang & Wang, 2017)", {"cls": 1, "div": 1, "beta": 50}),
}


# every shipped recipe asks for the speed settings the device it runs on is faster with (hfkd.launch)
SPEED = "speed_settings: auto   # bf16 autocast where the device computes bf16 natively, and channels_last"


def _value(v) -> str:
    return str(v) if not isinstance(v, str) else v


def _reference_lines(student: str, key: str) -> list[str]:
    """reference_top1 / reference_source keys (shown by hfkd sweep next to the measured top-1), or a comment."""
    if key in SIMKD_README.get(student, {}):
        return [f"reference_top1: {SIMKD_README[student][key]}",
                'reference_source: "SimKD README, CIFAR-100, resnet32x4 teacher, same loss weights as this recipe (spec sections 7, 10.5)"']
    if (student, key) in OTHER_PUBLISHED:
        top1, source = OTHER_PUBLISHED[(student, key)]
        return [f"reference_top1: {top1}", f'reference_source: "{source}; its loss weights may differ from these"']
    return ["# no published figure for this pair in the seed sources"]


def student_recipe(student: str, key: str) -> str:
    description, keys = METHODS[key]
    keys = {"method": key, **keys}
    lr = SMALL_MODEL_LR.get(student)
    lines = [
        f"# CIFAR-100, {TEACHER} teacher -> {student} student: {description}.",
        "# The reference schedule (240 epochs, SGD 0.9, wd 5e-4, lr x0.1 after 150/180/210, batch 64) is hfkd's default.",
        "# Train the teacher first: accelerate launch hfkd/run.py recipes/cifar100/teachers/resnet32x4.yaml",
        "# (or point `teacher` at SimKD's released save/teachers/models/resnet32x4_vanilla/resnet32x4_best.pth).",
        "dataset_name: uoft-cs/cifar100",
        f"model_name_or_path: {student}",
        f"teacher: outputs/cifar100/teachers/{TEACHER}",
    ]
    lines += [f"{k}: {_value(v)}" for k, v in keys.items()]
    lines += _reference_lines(student, key)
    if lr is not None:
        lines.append(f"learning_rate: {lr}   # the references force 0.01 for MobileNet / ShuffleNet students")
    lines.append(SPEED)
    lines.append(f"output_dir: outputs/cifar100/{TEACHER}-{student}/{key}")
    return "\n".join(lines) + "\n"


def baseline_recipe(student: str) -> str:
    lr = SMALL_MODEL_LR.get(student)
    lines = [
        f"# CIFAR-100, {student} trained alone (the student baseline of the seed table).",
        "dataset_name: uoft-cs/cifar100",
        f"model_name_or_path: {student}",
        "method: none",
        *_reference_lines(student, "student"),
    ]
    if lr is not None:
        lines.append(f"learning_rate: {lr}   # the references force 0.01 for MobileNet / ShuffleNet models")
    lines.append(SPEED)
    lines.append(f"output_dir: outputs/cifar100/{TEACHER}-{student}/student")
    return "\n".join(lines) + "\n"


TEACHER_RECIPE = """# CIFAR-100 teacher: resnet32x4 trained alone with the reference recipe (240 epochs, SGD 0.9, wd 5e-4, lr 0.05,
# x0.1 after 150/180/210, batch 64).
dataset_name: uoft-cs/cifar100
model_name_or_path: resnet32x4
method: none
reference_top1: 79.42
reference_source: "SimKD and RepDistiller READMEs (spec section 7)"
{speed}
output_dir: outputs/cifar100/teachers/resnet32x4
""".format(speed=SPEED)

IMAGENET_SIMKD = """# ImageNet-1k, ResNet-50 teacher -> ResNet-18 student with SimKD (f = 2), SimKD's ImageNet recipe (spec 4.1):
# 120 epochs, total batch 256, lr 0.1, x0.1 after 30/60/90, weight decay 1e-4, cls 0, div 0, beta 1.
# The teacher is torchvision's ResNet-50 weights through timm (the model SimKD distils from); both models are timm's.
#   accelerate launch --config_file accelerate_config.yaml hfkd/run.py recipes/imagenet/resnet50-resnet18/simkd.yaml
dataset_name: ILSVRC/imagenet-1k     # gated on the Hub: accept its terms and log in first
eval_split: validation
transform_preset: imagenet
model_name_or_path: resnet18
teacher: timm/resnet50.tv_in1k
method: simkd
simkd_factor: 2
cls: 0
div: 0
beta: 1
num_train_epochs: 120
per_device_train_batch_size: 32      # x 8 GPUs = 256 (SimKD used 4 GPUs x 64)
per_device_eval_batch_size: 64
learning_rate: 0.1
weight_decay: 1.0e-4
lr_decay_epochs: [30, 60, 90]
dataloader_num_workers: 8
{speed}
output_dir: outputs/imagenet/resnet50-resnet18/simkd
""".format(speed=SPEED)


def main() -> None:
    (ROOT / "cifar100" / "teachers").mkdir(parents=True, exist_ok=True)
    (ROOT / "cifar100" / "teachers" / "resnet32x4.yaml").write_text(TEACHER_RECIPE)
    for student in ("resnet8x4", "vgg8", "ShuffleV2_1_5"):
        folder = ROOT / "cifar100" / f"{TEACHER}-{student}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "student.yaml").write_text(baseline_recipe(student))
        for key in METHODS:
            (folder / f"{key}.yaml").write_text(student_recipe(student, key))
    (ROOT / "imagenet" / "resnet50-resnet18").mkdir(parents=True, exist_ok=True)
    (ROOT / "imagenet" / "resnet50-resnet18" / "simkd.yaml").write_text(IMAGENET_SIMKD)


if __name__ == "__main__":
    main()
