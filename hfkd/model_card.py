"""Model cards for exported students: method, teacher, student, data, results, curves and the resolved recipe.

The card is rendered from ``model_cards/model_card.md.j2``; its YAML metadata is built with huggingface_hub's own
``ModelCardData`` / ``EvalResult``, so the ``model-index`` the Hub reads is valid by construction and can be
checked offline with ``huggingface_hub.ModelCard``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_DIR = Path(__file__).resolve().parent / "model_cards"
TEMPLATE_NAME = "model_card.md.j2"
CURVES_IMAGE = "training_curves.png"
HUB_URL = "https://huggingface.co"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class ModelCardContext:
    """What the trainer cannot know by itself: the sources of data and teacher, the recipe, and baselines.

    ``baselines`` are rows ``{"label", "top1_last", "top5_last", "top1_best"}`` of related runs (the teacher and the
    student trained alone) shown beside this model's results.
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


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def results_rows(context: ModelCardContext, model_label: str, results: dict[str, Any]) -> str:
    """The markdown results table: this model first, then the teacher and any baselines."""
    rows = [(model_label, results.get("top1_last"), results.get("top5_last"), results.get("top1_best"),
             results.get("epoch_best"))]
    if context.teacher_top1 is not None:
        rows.append((f"teacher {_link(context.teacher_name)}", context.teacher_top1, None, None, None))
    for baseline in context.baselines:
        rows.append((baseline["label"], baseline.get("top1_last"), baseline.get("top5_last"),
                     baseline.get("top1_best"), baseline.get("epoch_best")))
    lines = ["| model | top-1 last | top-5 last | top-1 best | best epoch |", "|---|---|---|---|---|"]
    for label, top1, top5, best, epoch in rows:
        epoch_text = "-" if epoch is None else (str(int(epoch)) if float(epoch).is_integer() else f"{epoch:.2f}")
        lines.append(f"| {label} | {_metric(top1)} | {_metric(top5)} | {_metric(best)} | {epoch_text} |")
    return "\n".join(lines)


def card_metadata(
    context: ModelCardContext, model_name: str, method: str, results: dict[str, Any], native_transformers: bool
) -> str:
    """YAML front matter: library, tags, base model (the teacher), datasets and the model-index eval results."""
    from huggingface_hub import EvalResult, ModelCardData

    dataset = hub_id(context.dataset_name) or context.dataset_name or "unknown"
    eval_results = []
    for key, name in (("top1_last", "Top-1 accuracy (last epoch)"), ("top5_last", "Top-5 accuracy (last epoch)")):
        if results.get(key) is not None:
            eval_results.append(
                EvalResult(task_type="image-classification", task_name="Image Classification",
                           dataset_type=dataset, dataset_name=dataset, dataset_split=context.eval_split,
                           metric_type="accuracy", metric_name=name, metric_value=round(float(results[key]), 4))
            )
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        tags=["hfkd", "knowledge-distillation", "image-classification", method]
        + ([] if native_transformers else ["custom_code"]),
        base_model=hub_id(context.teacher_name),
        datasets=[hub_id(context.dataset_name)] if hub_id(context.dataset_name) else None,
        metrics=["accuracy"],
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


def render_model_card(
    *,
    context: ModelCardContext,
    model_name: str,
    method: str,
    paper,
    loss_formula: str,
    results: dict[str, Any],
    num_classes: int,
    student_architecture: str,
    student_parameters: int,
    head_note: str | None,
    schedule: str,
    usage: str,
    curves_image: str | None,
    native_transformers: bool,
) -> str:
    """The README.md of an exported student."""
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), keep_trailing_newline=True, autoescape=False
    )
    student = context.student_name or student_architecture
    teacher = context.teacher_name
    method_label = method if paper is None else f"{method}: {paper.title}"
    if method == "none":
        title = f"{student} trained on {context.dataset_name} (no distillation)"
        summary = f"`{student}` trained alone with cross-entropy on {_link(context.dataset_name, 'datasets/')}."
    else:
        title = f"{student} distilled from {hub_id(teacher) or Path(str(teacher)).name} with {method}"
        summary = (
            f"`{student}` distilled from the teacher {_link(teacher)} with **{method}** on "
            f"{_link(context.dataset_name, 'datasets/')}: {_metric(results.get('top1_last'))} % top-1 at the last "
            f"epoch."
        )
    recipe = yaml.safe_dump(context.recipe, sort_keys=True).strip() if context.recipe else "# not recorded"
    return environment.get_template(TEMPLATE_NAME).render(
        metadata=card_metadata(context, model_name, method, results, native_transformers).strip(),
        title=title,
        summary=summary,
        method_label=method_label,
        paper=paper,
        loss_formula=loss_formula,
        teacher_link=_link(teacher) if teacher else "none (trained alone)",
        teacher_top1=context.teacher_top1,
        teacher_top1_source=context.teacher_top1_source,
        student_architecture=student_architecture,
        student_parameters=f"{student_parameters:,}",
        head_note=head_note,
        dataset_link=_link(context.dataset_name, "datasets/"),
        train_split=context.train_split,
        eval_split=context.eval_split,
        num_classes=num_classes,
        schedule=schedule,
        results_table=results_rows(context, f"this model ({method})", results),
        curves_image=curves_image,
        usage=usage,
        recipe=recipe,
        citation=paper.bibtex() if paper is not None else None,
    )
