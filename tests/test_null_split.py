"""With members the target never saw, no attack may find a signal: AUC within 0.5 ± 0.1."""

import pytest

from benchmark.run.cache import Cache
from benchmark.run.runner import run_suite
from conftest import make_suite, tiny_suite_dict


@pytest.fixture(scope="module")
def null_cards(tmp_path_factory, cache_dir):
    suite = tiny_suite_dict(
        split={"members": 96, "nonmembers": 256, "calibration_members": 16, "calibration_nonmembers": 32, "null": True}
    )
    return run_suite(make_suite(suite), tmp_path_factory.mktemp("null"), Cache(cache_dir, log=lambda _: None))


def test_every_attack_is_at_chance_on_a_null_split(null_cards):
    assert len(null_cards) == 8  # 4 attacks × 2 knowledge levels
    for card in null_cards:
        assert abs(card.auc - 0.5) <= 0.1, (card.attack, card.auc)


def test_null_split_trains_on_decoys_of_the_same_size(null_cards):
    indices = null_cards[0].split_indices
    assert not set(indices["members"]) & set(indices["training"])
    assert len(indices["training"]) == 96 + 16
