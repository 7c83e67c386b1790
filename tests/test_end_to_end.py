"""The tiny suite through the whole harness: outputs, keys, determinism, caching, resume."""

import json

import pytest

from benchmark.run.cache import Cache
from benchmark.run.runner import run_suite
from conftest import make_suite, tiny_suite_dict

CARD_KEYS = {
    "suite",
    "dataset",
    "target",
    "defense",
    "attack",
    "threat_model",
    "seed",
    "n_members",
    "n_nonmembers",
    "auc",
    "asr_best_threshold",
    "tpr_at_1pct_fpr",
    "tpr_at_0_1pct_fpr",
    "auc_ci",
    "asr_best_threshold_ci",
    "tpr_at_1pct_fpr_ci",
    "tpr_at_0_1pct_fpr_ci",
    "queries_per_sample",
    "seconds_per_sample",
    "config_hash",
    "split_sha256",
    "split_indices",
    "versions",
    "utility",
    "at_fitted_threshold",
    "knowledge",
    "calibration_images",
    "orientation",
    "target_hash",
    "attack_config",
}
NUMERIC = ("auc", "asr_best_threshold", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr", "auc_ci", "asr_best_threshold_ci",
           "queries_per_sample")  # fmt: skip


def metric_values(cards):
    return {(c.attack, c.knowledge): {k: getattr(c, k) for k in NUMERIC} for c in cards}


def test_outputs_and_card_keys(tiny_run):
    out, cards = tiny_run
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8  # 4 attacks × 2 knowledge levels
    for card in map(json.loads, lines):
        assert set(card) >= CARD_KEYS
        for key in ("auc", "asr_best_threshold", "tpr_at_1pct_fpr", "tpr_at_0_1pct_fpr"):
            assert 0 <= card[key] <= 1
            assert card[f"{key}_ci"][0] <= card[key] <= card[f"{key}_ci"][1]
        assert (card["n_members"], card["n_nonmembers"]) == (32, 128)
        assert not set(card["split_indices"]["members"]) & set(card["split_indices"]["nonmembers"])
        assert set(card["split_indices"]["members"]) <= set(card["split_indices"]["training"])
        assert not set(card["split_indices"]["nonmembers"]) & set(card["split_indices"]["training"])
    assert len(list((out / "scores").glob("*.npz"))) == 8
    board = (out / "LEADERBOARD.md").read_text()
    assert all(name in board for name in ("nais_cal", "loss", "pia", "TPR@1%FPR"))
    assert (out / "roc_digits_tiny-0.1M_none.png").stat().st_size > 5000


def test_overfit_target_leaks_and_queries_are_reported(tiny_run):
    _, cards = tiny_run
    by_attack = {c.attack: c for c in cards if c.knowledge == "shadow"}
    assert max(c.auc for c in cards) > 0.85
    assert {k: c.queries_per_sample for k, c in by_attack.items()} == {"nais": 5, "nais_cal": 5, "loss": 1, "pia": 2}
    assert by_attack["loss"].attack_config["t"] == 200
    assert by_attack["nais_cal"].calibration["chosen"]["t_inject"] in (10, 20, 40, 80, 150)
    utility = by_attack["loss"].utility
    assert utility["generalization_gap"] > 0  # an overfit target denoises its members better


def test_second_run_trains_nothing_and_resume_skips_finished_cells(tiny_run, cache_dir, tmp_path):
    out, cards = tiny_run
    built = []
    cache = Cache(cache_dir, log=built.append)
    original_build = cache.get_or_build

    def spy(kind, key, build):
        def recording_build(folder, scratch):
            built.append(key)
            return build(folder, scratch)

        return original_build(kind, key, recording_build)

    cache.get_or_build = spy
    again = run_suite(make_suite(tiny_suite_dict()), tmp_path, cache)
    assert built == []
    assert metric_values(again) == metric_values(cards)
    # resuming in the finished folder recomputes nothing: the target is not even loaded
    cache.get_or_build = lambda *a: pytest.fail("a finished run must not touch the target")
    assert metric_values(run_suite(make_suite(tiny_suite_dict()), out, cache)) == metric_values(cards)


def test_fresh_cache_same_seed_gives_identical_metrics(tiny_run, tmp_path):
    _, cards = tiny_run
    again = run_suite(make_suite(tiny_suite_dict()), tmp_path / "out", Cache(tmp_path / "cache", log=lambda _: None))
    assert metric_values(again) == metric_values(cards)


def test_corrupt_cache_entry_is_rebuilt_not_used(tmp_path):
    suite = tiny_suite_dict(attacks=["loss"])
    suite["targets"][0]["params"]["train_steps"] = 20
    messages = []
    cache = Cache(tmp_path / "cache", log=messages.append)
    first = run_suite(make_suite(suite), tmp_path / "a", cache)
    weights = next((tmp_path / "cache").rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    second = run_suite(make_suite(suite), tmp_path / "b", cache)
    assert any("corrupt" in m and "rebuilding" in m for m in messages)
    assert metric_values(second) == metric_values(first)
