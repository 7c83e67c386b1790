"""A contributor adds a defense and an attack, each one file from its template, in a fresh checkout:
``validate`` runs the conformance checks on both, and the defense's row reaches the page."""

import shutil
import subprocess
import sys

import yaml

from benchmark.core.hashing import sha256_file
from conftest import TINY_SUITE

REPO_PARTS = ("benchmark", "attacks", "defenses", "targets", "pyproject.toml")


def _checkout(root, destination):
    destination.mkdir()
    for part in REPO_PARTS:
        source = root / part
        if source.is_dir():
            shutil.copytree(source, destination / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, destination / part)


def _benchmark_hashes(repo):
    return {str(p.relative_to(repo)): sha256_file(p) for p in sorted((repo / "benchmark").rglob("*.py"))}


def _cli(repo, *args):
    result = subprocess.run(
        [sys.executable, "-m", "benchmark", *args], cwd=repo, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_new_defense_is_one_file_validated_and_ranked(tmp_path, request):
    root = request.config.rootpath
    repo = tmp_path / "checkout"
    _checkout(root, repo)
    before = _benchmark_hashes(repo)

    template = (repo / "defenses" / "_template.py").read_text()
    new_defense = template.replace("my_defense", "input_noise").replace("MyDefense", "InputNoise")
    (repo / "defenses" / "input_noise.py").write_text(new_defense.replace("TEMPLATE — copy", "Gaussian noise — from"))

    attack = (
        (repo / "attacks" / "_template.py").read_text().replace("my_attack", "loss_t100").replace("MyAttack", "Loss100")
    )
    (repo / "attacks" / "loss_t100.py").write_text(attack.replace("TEMPLATE — copy", "Loss at t=100 — from"))

    assert "input_noise" in _cli(repo, "list")
    validated = _cli(repo, "validate", "--leaderboard", str(tmp_path / "board"))
    assert "validate: all checks passed" in validated
    assert "conformance: loss_t100 passes" in validated and "conformance: input_noise passes" in validated

    suite = dict(TINY_SUITE, defenses=["none", {"name": "input_noise", "params": {"strength": 0.2}}])
    suite["attacks"] = ["loss", "pia"]
    suite["targets"] = [
        dict(TINY_SUITE["targets"][0], params={**TINY_SUITE["targets"][0]["params"], "train_steps": 30})
    ]
    (repo / "contrib.yaml").write_text(yaml.safe_dump(suite))
    _cli(repo, "run", "--suite", "contrib.yaml", "--out", str(tmp_path / "run"), "--cache", str(tmp_path / "cache"))
    _cli(repo, "leaderboard", "--publish", str(tmp_path / "run"), "--dir", str(tmp_path / "board"))
    _cli(repo, "leaderboard", "--check", "--dir", str(tmp_path / "board"))

    page = (tmp_path / "board" / "LEADERBOARD.md").read_text()
    ranking = page.split("## Defenses on digits/tiny-0.1M, knowledge `shadow`")[1].split("\n## ")[0]
    assert "| input_noise " in ranking and "| none " in ranking
    assert _benchmark_hashes(repo) == before
