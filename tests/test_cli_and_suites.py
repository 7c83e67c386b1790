"""Bad input: one readable line, exit code 2, no traceback; good input: every registry listed."""

import os
import subprocess
import sys

import pytest
import yaml

from benchmark.cli import main
from benchmark.core import runtime
from benchmark.core.errors import BenchmarkError
from benchmark.run.suite import load_suite, registered_suites
from conftest import tiny_suite_dict, write_suite


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", sorted(registered_suites()))
def test_shipped_suites_validate(name):
    suite = load_suite(name)
    assert suite.attacks and suite.targets and suite.seeds


@pytest.mark.parametrize(
    "change, message",
    [
        ({"attacks": ["nias"]}, "unknown attack 'nias': did you mean 'nais'?"),
        ({"atacks": ["nais"]}, "unknown key 'atacks': did you mean 'attacks'?"),
        ({"seeds": "zero"}, "'seeds' must be a non-empty list"),
        (
            {"datasets": [{"name": "digits", "params": {"image_size": "big"}}]},
            "'image_size' = 'big' should be an integer",
        ),
        ({"datasets": [{"name": "digits", "params": {"image_sise": 8}}]}, "did you mean 'image_size'?"),
        ({"split": {"members": 1}}, "at least 2 images"),
        ({"attacks": [{"name": "nais", "params": {"k": 1}}]}, "k must be at least 2"),
        ({"attacks": [{"name": "nais", "params": {"statistic": "hull"}}]}, "is not one of"),
        ({"attacks": ["nais", "nais"]}, "lists 'nais' twice"),
        (
            {"attacks": ["loss_cal", {"name": "loss_cal", "knowledge": ["target-members"]}]},
            "lists 'loss_cal' twice",
        ),
        (
            {"attacks": ["nais", {"name": "nais", "params": {"k": 3}, "knowledge": ["target-members"]}]},
            "lists 'nais' twice",
        ),
        ({"defenses": ["dp"]}, "unknown defense 'dp'"),
        # compatibility declared on the classes, refused when the suite is read
        ({"attacks": ["clid"]}, "attack 'clid' conditions on captions, which target 'tiny-0.1M' does not take"),
        (
            {
                "targets": [{"name": "diffusers_folder", "params": {"path": "./never-read"}}],
                "defenses": ["augmentation"],
            },
            "target 'diffusers_folder' is attacked as given",
        ),
        (
            {
                "targets": [{"name": "text_to_image", "params": {"path": "./never-read", "finetune_steps": 5}}],
                "defenses": ["dpsgd"],
            },
            "defense 'dpsgd' replaces the training procedure",
        ),
    ],
)
def test_suite_mistakes_are_named(tmp_path, change, message):
    path = write_suite(tmp_path, tiny_suite_dict(**change))
    with pytest.raises(BenchmarkError, match=message.replace("(", r"\(").replace("?", r"\?")):
        load_suite(str(path))


def test_a_bare_yaml_null_key_is_named_with_its_fix(tmp_path, capsys):
    """YAML reads ``null: true`` as a key that is not a string; the suite author wrote the split's
    ``null`` flag, so the error says to quote it instead of failing inside difflib."""
    raw = tiny_suite_dict()
    path = write_suite(tmp_path, raw | {"split": raw["split"] | {None: True}})
    assert "null: true" in path.read_text()
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 2
    assert 'a parameter is named null; quote it: "null"' in capsys.readouterr().err


def test_an_attack_repeats_under_other_knowledge_on_some_defenses(tmp_path):
    """One name on the page: target-members cells for the undefended target only, shadow everywhere."""
    suite = load_suite(str(write_suite(tmp_path, tiny_suite_dict(
        defenses=["none", "augmentation"],
        attacks=[{"name": "loss_cal", "knowledge": ["shadow"]},
                 {"name": "loss_cal", "knowledge": ["target-members"], "defenses": ["none"]}],
    ))))  # fmt: skip
    cells = {
        (defense.label, attack.label, level)
        for defense in suite.defenses
        for attack in suite.attacks_for(defense)
        for level in suite.knowledge_for(attack)
    }
    assert cells == {("none", "loss_cal", "shadow"), ("none", "loss_cal", "target-members"),
                     ("augmentation", "loss_cal", "shadow")}  # fmt: skip


def test_oversized_split_is_refused_before_training(tmp_path, capsys):
    path = write_suite(tmp_path, tiny_suite_dict(split={"members": 1500, "nonmembers": 500}))
    assert main(["run", "--suite", str(path), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]) == 2
    assert "asks for" in capsys.readouterr().err
    assert not (tmp_path / "c" / "targets").exists()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--suite", "quik"], "unknown suite 'quik': did you mean 'quick'?"),
        (["run", "--suite", "missing.yaml"], "does not exist"),
        (["run"], "the following arguments are required: --suite"),
        (["frobnicate"], "invalid choice"),
        (["audit", "--model", "/nonexistent", "--members", "/x", "--nonmembers", "/y"], "does not exist"),
    ],
)
def test_cli_errors_are_one_line_without_traceback(args, fragment):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_invalid_yaml_is_one_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("attacks: [nais\nseeds: [0]\n")
    result = run_cli("run", "--suite", str(path))
    assert result.returncode == 2
    assert "not valid YAML" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback():
    result = run_cli("--debug", "run", "--suite", "quik")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_list_shows_every_registry():
    result = run_cli("list")
    assert result.returncode == 0
    for name in ("nais", "nais_cal", "loss", "pia", "none", "ddpm_unet", "diffusers_folder", "digits", "quick", "full"):
        assert name in result.stdout
    assert "gray-box" in result.stdout


def test_suite_files_are_yaml_mappings_only(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump(["nais"]))
    with pytest.raises(BenchmarkError, match="a suite is a YAML mapping"):
        load_suite(str(path))


def test_threads_default_to_omp_num_threads_else_every_core(monkeypatch):
    """A process sharing the cores (accelerate launch, a Slurm job, a parallel test worker) is told so
    through OMP_NUM_THREADS; taking every core anyway makes the thread pools spin against each other."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert runtime.default_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    assert runtime.default_threads() == os.cpu_count()
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert runtime.default_threads() == os.cpu_count()
