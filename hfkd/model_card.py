"""Model cards for exported students: method, teacher, student, data, results, curves and the resolved recipe.

One builder serves training and ``hfkd convert``: a :class:`ModelCardContext` (what the run knows from outside the
model: data, sources, recipe, earlier stages) and a :class:`ModelDescription` (the model, its loss, schedule and
results) are rendered from ``model_cards/model_card.md.j2``. The YAML metadata is built with huggingface_hub's own
``ModelCardData`` / ``EvalResult``, so the ``model-index`` the Hub reads is valid by construction and can be checked
offline with ``huggingface_hub.ModelCard``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .results import format_cell, markdown_table

TEMPLATE_DIR = Path(__file__).resolve().parent / "model_cards"
TEMPLATE_NAME = "model_card.md.j2"
CURVES_IMAGE = "training_curves.png"
HUB_URL = "https://huggingface.co"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelCardContext:
    """What the trainer cannot know by itself: the sources of data and teacher, the recipe, and baselines.

    ``baselines`` are rows ``{"label", "top1_last", "top5_last", "top1_best", "epoch_best"}`` of related runs (earlier
    stages of the recipe) shown beside this model's results; a row with ``"is_teacher": True`` is the teacher's own
    stage, which then stands for the teacher in the results table. ``teacher_top1`` (in %) is the teacher's accuracy
    as its source records it, or as hfkd measured it before distillation (``teacher_top1_source`` says which).
    ``hardware`` is the launch's one-line description (device, precision, memory format, why).
    """

    dataset_name: str | None = None
    train_split: str = "train"
    eval_split: str = "test"
    student_name: str | None = None
    teacher_name: str | None = None
    teacher_top1: float | None = None
    teacher_top1_source: str | None = None
    recipe: dict[str, Any] | None = None
    baselines: list[dict[str, Any]] = field(default_factory=list)
    hardware: str | None = None


def hub_id(name: str | None) -> str | None:
    """``name`` as a Hub repo id when it is one (``user/model``, ``timm/...``, ``hf-hub:...``), else None."""
    if not name:
        return None
    name = name.removeprefix("hf-hub:")
    return name if _HUB_ID.match(name) and not Path(name).exists() else None


def _link(name: str | None, kind: str = "") -> str:
    repo = hub_id(name)
    if repo:
        return f"[{repo}]({HUB_URL}/{kind}{repo})"
    return f"`{name}`" if name else "none"


def results_rows(context: ModelCardContext, model_label: str, results: dict[str, Any]) -> str:
    """The markdown results table: this model first, then the teacher (once) and the other earlier stages."""
    rows = [{"label": model_label, **results}]
    if context.teacher_top1 is not None and not any(b.get("is_teacher") for b in context.baselines):
        rows.append({"label": f"teacher {_link(context.teacher_name)}", "top1_last": context.teacher_top1})
    rows += context.baselines
    columns = (("top1_last", "top-1 last"), ("top5_last", "top-5 last"), ("top1_best", "top-1 best"),
               ("epoch_best", "best epoch"))
    cells = [[row["label"], *(format_cell(row.get(key), epoch=key == "epoch_best") for key, _ in columns)]
             for row in rows]
    return markdown_table(["model", *(title for _, title in columns)], cells)


# (results key, model-index metric type, metric name): top-1 is the Hub's "accuracy", top-5 a type of its own so the
# evaluation widget does not take one for the other
CARD_METRICS = (("top1_last", "accuracy", "Top-1 accuracy (last epoch)"),
                ("top5_last", "top_5_accuracy", "Top-5 accuracy (last epoch)"))


def card_metadata(
    context: ModelCardContext, model_name: str, method: str, results: dict[str, Any], export_format: str,
    license: str | None = None,
) -> str:
    """YAML front matter: library (timm for a timm checkpoint, else transformers), license, tags (the method's,
    unless trained alone; custom_code for an hfkd export), base model (the teacher), datasets and the model-index
    eval results."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = hub_id(context.dataset_name) or context.dataset_name or "unknown"
    eval_results = []
    for key, metric_type, name in CARD_METRICS:
        if results.get(key) is not None:
            eval_results.append(
                EvalResult(task_type="image-classification", task_name="Image Classification",
                           dataset_type=dataset, dataset_name=dataset, dataset_split=context.eval_split,
                           metric_type=metric_type, metric_name=name, metric_value=round(float(results[key]), 4))
            )
    data = ModelCardData(
        library_name="timm" if export_format == "timm" else "transformers",
        license=license,
        pipeline_tag="image-classification",
        tags=["hfkd", "knowledge-distillation", "image-classification"] + ([method] if method != "none" else [])
        + (["custom_code"] if export_format == "hfkd" else []),
        base_model=hub_id(context.teacher_name),
        datasets=[hub_id(context.dataset_name)] if hub_id(context.dataset_name) else None,
        metrics=["accuracy", "top_5_accuracy"] if results.get("top5_last") is not None else ["accuracy"],
        model_name=model_name,
        eval_results=eval_results or None,
    )
    return data.to_yaml()


def plot_training_curves(log_history: list[dict[str, Any]], path: Path) -> Path | None:
    """Training loss terms and evaluation top-1 per epoch, as a PNG; None when there is nothing to plot."""
    train = [h for h in log_history if "loss" in h and "epoch" in h]
    evals = [h for h in log_history if "eval_top1" in h and "epoch" in h]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    for key in ["loss", *sorted({k for h in train for k in h if k.startswith("loss_")})]:
        points = [(h["epoch"], h[key]) for h in train if key in h]
        if points:
            left.plot(*zip(*points), marker="o", markersize=3, label=key)
    left.set_xlabel("epoch")
    left.set_ylabel("training loss")
    left.legend(fontsize=8)
    for key, label in (("eval_top1", "top-1"), ("eval_top5", "top-5")):
        points = [(h["epoch"], h[key]) for h in evals if key in h]
        if points:
            right.plot(*zip(*points), marker="o", markersize=3, label=label)
    right.set_xlabel("epoch")
    right.set_ylabel("eval accuracy (%)")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


@dataclass(frozen=True)
class ModelDescription:
    """What a card says about the model itself.

    ``paper`` is the method's ``Paper`` (or None), ``results`` a ``summarize_evaluations`` dict (accuracies in %),
    ``parameters`` the exported model's parameter count, ``head_note`` what a method head adds, ``repo`` what the
    usage example loads (a Hub id or the local folder), ``export_format`` how the export is saved (``"transformers"``
    or ``"timm"``: the library's own checkpoint; ``"hfkd"``: ``HfkdForImageClassification`` with its code, see
    ``hfkd.export.export_format``), ``curves_image`` the training-curve PNG beside the card.
    """

    model_name: str
    method: str
    paper: Any
    loss_formula: str
    results: dict[str, Any]
    num_classes: int
    architecture: str
    parameters: int
    schedule: str
    repo: str
    export_format: str
    head_note: str | None = None
    curves_image: str | None = None
    license: str | None = None


def usage_example(repo: str, export_format: str) -> str:
    """The card's code: the model in an image-classification pipeline (remote code for an hfkd export), after
    ``timm.create_model`` for a timm checkpoint (``hf-hub:`` for a Hub id, ``local-dir:`` for a folder)."""
    remote = ", trust_remote_code=True" if export_format == "hfkd" else ""
    timm_lines = ""
    if export_format == "timm":
        source = f"hf-hub:{repo}" if hub_id(repo) else f"local-dir:{repo}"
        timm_lines = f'import timm\n\nmodel = timm.create_model("{source}", pretrained=True)\n\n'
    return (
        timm_lines + "from transformers import pipeline\n\n"
        f'classifier = pipeline("image-classification", model="{repo}"{remote})\n'
        'print(classifier("image.png"))'
    )


def render_model_card(context: ModelCardContext, model: ModelDescription) -> str:
    """The README.md of an exported student (or a converted reference checkpoint)."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), keep_trailing_newline=True, autoescape=False
    )
    method, results, paper = model.method, model.results, model.paper
    student = context.student_name or model.architecture
    teacher = context.teacher_name
    method_label = method if paper is None else f"{method}: {paper.title}"
    if method == "none":
        title = f"{student} trained on {context.dataset_name} (no distillation)"
        summary = f"`{student}` trained alone with cross-entropy on {_link(context.dataset_name, 'datasets/')}."
    else:
        title = f"{student} distilled from {hub_id(teacher) or Path(str(teacher)).name} with {method}"
        summary = (
            f"`{student}` distilled from the teacher {_link(teacher)} with **{method}** on "
            f"{_link(context.dataset_name, 'datasets/')}: {format_cell(results.get('top1_last'))} % top-1 at the "
            f"last epoch."
        )
    recipe = yaml.safe_dump(context.recipe, sort_keys=True).strip() if context.recipe else "# not recorded"
    return environment.get_template(TEMPLATE_NAME).render(
        metadata=card_metadata(context, model.model_name, method, results, model.export_format,
                               model.license).strip(),
        title=title,
        summary=summary,
        method_label=method_label,
        paper=paper,
        loss_formula=model.loss_formula,
        teacher_link=_link(teacher) if teacher else "none (trained alone)",
        teacher_top1=context.teacher_top1,
        teacher_top1_source=context.teacher_top1_source,
        student_architecture=model.architecture,
        student_parameters=f"{model.parameters:,}",
        head_note=model.head_note,
        dataset_link=_link(context.dataset_name, "datasets/"),
        train_split=context.train_split,
        eval_split=context.eval_split,
        num_classes=model.num_classes,
        schedule=model.schedule,
        hardware=context.hardware,
        results_table=results_rows(context, f"this model ({method})", results),
        curves_image=model.curves_image,
        usage=usage_example(model.repo, model.export_format),
        recipe=recipe,
        citation=paper.bibtex() if paper is not None else None,
    )


def write_model_card(output_dir: str | Path, context: ModelCardContext, model: ModelDescription) -> Path:
    """Render the card into ``output_dir/README.md``; returns its path."""
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_model_card(context, model))
    return path


def loss_formula(weights, method: str) -> str:
    """``cls·CE + div·KD(T) + beta·method`` with the run's weights (``LossWeights``), zero-weight terms left out."""
    terms = [f"{weights.cls:g}·CE" if weights.cls else "",
             f"{weights.div:g}·KD(T={weights.kd_temperature:g})" if weights.div else ""]
    if weights.beta and method != "none":
        terms.append(f"{weights.beta:g}·{method}")
    return " + ".join(t for t in terms if t) or "0"


def schedule_summary(args) -> str:
    """Epochs, batch, optimizer, learning-rate schedule, weight decay and precision of a ``DistillationConfig``."""
    from .schedule import milestone_epochs

    lr = f"lr {args.learning_rate:g}"
    if args.lr_decay_epochs:
        milestones = milestone_epochs(args.lr_decay_epochs, args.num_train_epochs)
        ran = [m for m in milestones if m < args.num_train_epochs or args.max_steps > 0]  # decays that happened
        lr += (f", ×{args.lr_decay_rate:g} after epochs {', '.join(f'{m:g}' for m in ran)}" if ran else
               " constant (its milestones lay past the last epoch)")
    else:
        lr += f" ({getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)})"
    optim = getattr(args.optim, "value", args.optim)
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return (
        f"{args.num_train_epochs:g} epochs, batch {args.per_device_train_batch_size} × {args.world_size} process(es), "
        f"{optim} ({args.optim_args or 'defaults'}), {lr}, weight decay {args.weight_decay:g}, {precision}"
    )


def describe_trained_model(
    model, args, log_history: list[dict[str, Any]], model_name: str, repo: str, curves_image: str | None
) -> ModelDescription:
    """The card's description of a trained ``DistillationModel`` (what the export holds) under ``args``."""
    from .export import export_format
    from .models import TransformersFeatureClassifier, provenance_of
    from .results import summarize_evaluations

    method, student = model.method, model.student
    head = method.export_head() if method is not None else None
    transformers_student = isinstance(student, TransformersFeatureClassifier)
    if transformers_student:
        architecture = f"transformers {student.model.config.model_type}"
    else:
        provenance = provenance_of(student)
        architecture = (provenance.architecture if provenance is not None else None) or type(student).__name__
    parameters = sum(p.numel() for p in student.parameters())
    if head is not None:
        parameters += sum(p.numel() for p in head[1].parameters())
    return ModelDescription(
        model_name=model_name,
        method=args.method,
        paper=method.paper if method is not None else None,
        loss_formula=loss_formula(model.weights, args.method),
        results=summarize_evaluations(log_history),
        num_classes=student.num_classes,
        architecture=architecture,
        parameters=parameters,
        schedule=schedule_summary(args),
        repo=repo,
        export_format=export_format(model),
        head_note="backbone + the method's prediction head (the teacher's reused classifier)" if head else None,
        curves_image=curves_image,
        license=args.license,
    )
