"""Every recipe shipped in recipes/ parses into valid arguments (keys, values, method names)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfkd.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").rglob("*.yaml"))
RECIPES = [p for p in RECIPES if "accelerate_configs" not in p.parts]


def test_there_are_recipes_for_the_seed_table():
    names = {p.relative_to(p.parents[2]).as_posix() for p in RECIPES if p.parent.name.startswith("resnet32x4-")}
    for student in ("resnet8x4", "vgg8", "ShuffleV2_1_5"):
        for method in ("student", "kd", "fitnet", "at", "sp", "vid", "crd", "srrl", "semckd", "simkd_f2",
                       "simkd_f4", "simkd_f8", "spherical"):
            assert f"cifar100/resnet32x4-{student}/{method}.yaml" in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(p.parents[2]).as_posix())
def test_recipe_parses(path):
    recipe = load_recipe(path)
    for run in recipe.runs:
        assert run.model_args.model_name_or_path
        if "ShuffleV2_1_5" in path.parent.name:
            assert run.training_args.learning_rate == 0.01  # the references' small-model rule
