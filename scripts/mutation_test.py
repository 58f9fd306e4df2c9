"""Mutation testing of the modules where a silent error changes results (docs/testing.md), one module at a time.

    pip install -e '.[mutation]'
    python scripts/mutation_test.py hfkd/schedule.py            # one module, with its own fast test files
    python scripts/mutation_test.py --list                      # the modules and the tests each one runs
    python scripts/mutation_test.py hfkd/data/transforms.py --only 'hfkd.data.transforms.xǁRandomCropFlipǁ*'

mutmut (https://github.com/boxed/mutmut) reads its settings from a ``[mutmut]`` section of setup.cfg and mutates a
copy of the sources under ``mutants/``. Each module here is mutated against only the test files that exercise it (the
whole suite per mutant would take days on a small machine), so every module gets its own scratch project,
``build/mutation/<module>/``, holding a copy of hfkd/, tests/ and a setup.cfg naming that module and those tests.
Each run starts that folder afresh (mutmut's cache does not notice changed tests); it is kept afterwards, so
``mutmut show <name>`` run inside it shows a survivor's diff. On demand only: not part of the test suite or CI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# module -> the pytest arguments selecting the tests that exercise it (fast ones: no subprocess runs)
TESTS = {
    "hfkd/schedule.py": ["tests/test_trainer.py", "-k", "milestone"],
    "hfkd/data/keyed_random.py": ["tests/test_keyed_random.py"],
    "hfkd/data/transforms.py": ["tests/test_keyed_random.py", "tests/test_data.py", "tests/test_data_sources.py",
                                "-k", "not quickstart"],
    "hfkd/data/contrast.py": ["tests/test_contrast_sampler.py", "tests/test_keyed_random.py"],
    "hfkd/checkpoints.py": ["tests/test_checkpoint_selection.py"],
    "hfkd/methods/components/kl_divergence.py": ["tests/test_loss.py", "tests/test_method_logit_std.py",
                                                  "-k", "not end_to_end and not trainer_arguments"],
    "hfkd/methods/components/logit_transforms.py": ["tests/test_method_logit_std.py", "-k", "not end_to_end"],
    "hfkd/methods/components/*": ["tests/test_feature_layout.py", "tests/test_loss.py", "tests/test_method_cc.py",
                                  "tests/test_method_pkt.py", "tests/test_method_rkd.py", "tests/test_method_sp.py",
                                  "tests/test_method_srrl.py", "tests/test_method_crd.py", "-k", "not end_to_end"],
    "hfkd/methods/crd.py": ["tests/test_method_crd.py"],
    # every method file and component at once; mutmut runs, per mutant, only the tests that reach its function
    "hfkd/methods/*": ["tests/test_feature_layout.py", "tests/test_loss.py", "tests/test_distillation_model.py",
                       "tests/test_method_registry.py", "tests/test_method_components.py", "tests/test_teacher_head.py",
                       *(f"tests/test_method_{name}.py" for name in (
                           "at", "cc", "crd", "deit", "dist", "dkd", "fitnet", "logit_std", "nst", "pkt", "rkd",
                           "semckd", "simkd", "sp", "spherical", "srrl", "vid")),
                       "-k", "not end_to_end"],
    "hfkd/distillation_model.py": ["tests/test_distillation_model.py", "tests/test_loss.py", "tests/test_method_dkd.py",
                                   "tests/test_method_simkd.py", "tests/test_method_deit.py",
                                   "tests/test_method_spherical.py"],
    # the export's training-run tests (test_timm_export.py, test_method_simkd.py's end-to-end one) take minutes per
    # mutant; test_export.py checks every format on untrained students
    "hfkd/export.py": ["tests/test_export.py", "tests/test_model_sources.py", "tests/test_method_simkd.py",
                       "tests/test_timm_export.py::test_channels_last_student_exports_contiguous_weights_and_stays_"
                       "channels_last", "-k", "not end_to_end"],
}


def scratch_project(module: str) -> Path:
    """``build/mutation/<module>/`` with fresh copies of hfkd/ and tests/ and a setup.cfg for this module."""
    folder = REPO / "build" / "mutation" / module.replace("/", "_").replace("*", "all").removesuffix(".py")
    shutil.rmtree(folder, ignore_errors=True)
    for name in ("hfkd", "tests"):
        shutil.copytree(REPO / name, folder / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(REPO / "pyproject.toml", folder / "pyproject.toml")  # pytest's settings (no [tool.mutmut] there)
    selection = "\n    ".join(TESTS[module])
    (folder / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = hfkd\n"
        f"only_mutate = {module}\n"
        f"pytest_add_cli_args_test_selection =\n    {selection}\n"
        "pytest_add_cli_args = -p no:cacheprovider -x -q\n"
        # torch is not fork-safe once it has run: workers fork from a clean server process
        "process_isolation = forkserver\n"
        "use_git_change_detection = false\n"
    )
    return folder


def score(folder: Path) -> dict:
    """Counts per outcome from mutmut's own export, and the score killed / (killed + survived)."""
    subprocess.run([sys.executable, "-m", "mutmut", "export-cicd-stats"], cwd=folder, check=True,
                   capture_output=True)
    stats = json.loads((folder / "mutants" / "mutmut-cicd-stats.json").read_text())
    tested = stats["killed"] + stats["survived"]
    stats["score"] = round(100 * stats["killed"] / tested, 1) if tested else None
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", nargs="?", choices=sorted(TESTS))
    parser.add_argument("--list", action="store_true", help="print the modules and their test selections")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested in parallel")
    parser.add_argument("--only", nargs="+", default=[], metavar="GLOB",
                        help="test only the mutants whose names match (mutmut's names: module.x_function__mutmut_N, "
                             "module.xǁClassǁmethod__mutmut_N)")
    options = parser.parse_args()
    if options.list or options.module is None:
        for module, tests in TESTS.items():
            print(f"{module}: {' '.join(tests)}")
        return
    folder = scratch_project(options.module)
    # the scratch copy, not the editable install or this checkout, is what the tests import
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children", str(options.max_children),
                    *options.only], cwd=folder, env=env, check=True)
    survivors = subprocess.run([sys.executable, "-m", "mutmut", "results"], cwd=folder, env=env, check=True,
                               capture_output=True, text=True).stdout
    print(survivors)
    print(json.dumps({"module": options.module, **score(folder)}))


if __name__ == "__main__":
    main()
