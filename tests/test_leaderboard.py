"""The published leaderboard: cards are the truth, the page is generated, hand edits are caught."""

import json
import shutil

import pytest

from benchmark.cli import main
from benchmark.core.errors import BenchmarkError
from benchmark.report.leaderboard import Leaderboard


@pytest.fixture
def board(tiny_run, tmp_path):
    out, _ = tiny_run
    board = Leaderboard(tmp_path / "leaderboard")
    assert board.publish(out) == 4
    board.regenerate()
    return board


def _cards(board):
    return sorted(board.cards_dir.rglob("*.json"))


def test_published_board_passes_check_and_names_every_attack(board, capsys):
    assert board.check() == 4
    page = (board.folder / "LEADERBOARD.md").read_text()
    for section in ("Defenses, ranked by their strongest attack", "## Attacks", "Provenance", "reproduced"):
        assert section in page
    assert main(["leaderboard", "--check", "--dir", str(board.folder)]) == 0
    assert "up to date" in capsys.readouterr().out


def test_hand_edited_metric_is_caught_even_after_regenerating(board):
    path = _cards(board)[0]
    card = json.loads(path.read_text())
    card["auc"] = round(1 - card["auc"], 6)
    path.write_text(json.dumps(card))
    with pytest.raises(BenchmarkError, match="'auc' is .* but its scores give"):
        board.check()
    with pytest.raises(BenchmarkError, match="cards are generated, not edited"):
        board.regenerate()


def test_new_card_without_regenerating_fails_check(board, capsys):
    source = _cards(board)[0]
    card = json.loads(source.read_text())
    card["attack"] = "copied_attack"
    copy = source.with_name("copied.json")
    copy.write_text(json.dumps(card))
    shutil.copy(source.with_suffix(".npz"), copy.with_suffix(".npz"))
    assert main(["leaderboard", "--check", "--dir", str(board.folder)]) == 2
    err = capsys.readouterr().err
    assert "is out of date" in err and "python -m benchmark leaderboard" in err
    board.regenerate()
    assert board.check() == 5


def test_schema_violations_and_missing_scores_are_named(board):
    path = _cards(board)[0]
    card = json.loads(path.read_text())
    card["threat_model"] = "grey"
    path.write_text(json.dumps(card))
    with pytest.raises(BenchmarkError, match="invalid card at 'threat_model'"):
        board.check()
    card["threat_model"] = "gray-box"
    path.write_text(json.dumps(card))
    path.with_suffix(".npz").unlink()
    with pytest.raises(BenchmarkError, match="scores file .* is missing"):
        board.check()


def test_hand_edited_page_fails_check(board):
    page = board.folder / "LEADERBOARD.md"
    page.write_text(page.read_text().replace("0.", "0,", 1))
    with pytest.raises(BenchmarkError, match="out of date"):
        board.check()


def test_the_published_board_is_the_full_suite_as_registered(request):
    """Every published card is a cell of today's `full` suite (same hash), and every cell is published:
    so the page covers every registered attack and defense, and no change silently invalidated it."""
    from benchmark.api.registry import ATTACKS, DEFENSES
    from benchmark.run.runner import cell_hash
    from benchmark.run.suite import load_suite

    suite = load_suite("full")
    planned = {
        cell_hash(suite, suite.datasets[0], suite.targets[0], defense, attack, seed)
        for seed in suite.seeds
        for defense in suite.defenses_for(seed)
        for attack in suite.attacks_for(defense)
    }
    cards_dir = request.config.rootpath / "leaderboard" / "cards" / "full"
    published = {json.loads(path.read_text())["config_hash"] for path in cards_dir.glob("*.json")}
    assert published == planned
    # the digits board has no captions: caption-conditioned attacks (CLiD) are on the text-to-image path only
    assert {a.name for a in suite.attacks} == {e.name for e in ATTACKS.entries() if not e.cls.requires_captions}
    assert {d.name for d in suite.defenses} == {e.name for e in DEFENSES.entries()}
