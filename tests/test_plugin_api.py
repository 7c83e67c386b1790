"""The plugin surface: plugins import only ``benchmark.api``, which imports no harness internals;
learned state is guarded; the card's schema is generated; the page comes from its template."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.api import ATTACKS, DEFENSES, AttackContext, BenchmarkError
from benchmark.records.card import card_schema

ROOT = Path(__file__).resolve().parent.parent
PLUGIN_FOLDERS = ("attacks", "defenses", "targets", "benchmark/datasets")
PLUGIN_PACKAGES = {"attacks", "defenses", "targets"}


def _imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules.append(node.module or "")
    return modules


PLUGIN_FILES = sorted(p for folder in PLUGIN_FOLDERS for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py")


@pytest.mark.parametrize("path", PLUGIN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_plugins_import_only_the_public_api(path):
    package = path.parent.name
    for module in _imports(path):
        top = module.split(".")[0]
        if top == "benchmark":
            assert module == "benchmark.api", f"{path.name} imports {module}; plugins import only benchmark.api"
        if top in PLUGIN_PACKAGES:
            # its own package's private helpers (defenses/_per_example_clipping.py) only, never another plugin
            assert top == package and module.split(".")[-1].startswith("_"), f"{path.name} imports plugin {module}"


def test_the_api_imports_no_harness_internals_and_no_plugin():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, benchmark.api; print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.split()  # fmt: skip
    internal = [m for m in loaded if m.startswith(("benchmark.run", "benchmark.report", "benchmark.tools"))]
    plugins = [m for m in loaded if m.split(".")[0] in PLUGIN_PACKAGES or m.startswith("benchmark.datasets")]
    assert not internal and not plugins, (internal, plugins)


def test_the_plugin_api_module_lists_only_names_it_defines():
    import benchmark.api as api

    assert all(hasattr(api, name) for name in api.__all__)


def test_learned_state_is_guarded_before_calibration():
    entry = ATTACKS.get("loss_cal")
    attack = entry.cls(entry.cls.Config(**entry.preset))
    with pytest.raises(BenchmarkError, match=r"LossAttack.settings_ is learned by calibrate\(\)"):
        attack.score(None, torch.zeros(2, 1, 8, 8), AttackContext(torch.Generator()))
    secmi = ATTACKS.get("secmi_nn")
    head = secmi.cls(secmi.cls.Config(head="classifier"))
    with pytest.raises(BenchmarkError, match="head_ is learned by calibrate"):
        head.head_score(torch.zeros(2, 1, 8, 8))
    assert np.all(ATTACKS.get("secmi").cls(secmi.cls.Config()).head_score(torch.zeros(2, 1, 8, 8)) == 0)


def test_defense_costs_before_training_are_refused_clearly():
    entry = DEFENSES.get("dpsgd")
    with pytest.raises(BenchmarkError, match=r"DPSGD.epsilon_ is learned by train\(\)"):
        entry.cls(entry.cls.Config()).costs()


def test_the_card_schema_file_is_generated_from_the_card_class():
    committed = json.loads((ROOT / "benchmark" / "records" / "card_schema.json").read_text())
    assert committed == card_schema(), "regenerate it: python -m benchmark leaderboard --schema"


def test_the_page_comes_from_its_template():
    from benchmark.report import render

    source = Path(render.__file__).read_text()
    assert "leaderboard.md.j2" in source and "lines +=" not in source
