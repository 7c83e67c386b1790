"""The published leaderboard: cards are the truth, the page is generated, hand edits are caught."""

import json
import shutil
from html.parser import HTMLParser

import pytest

from benchmark.cli import main
from benchmark.core.errors import BenchmarkError
from benchmark.report.leaderboard import Leaderboard
from benchmark.run.runner import registered_plan


@pytest.fixture
def board(tiny_run, tmp_path):
    out, _ = tiny_run
    board = Leaderboard(tmp_path / "leaderboard")
    assert board.publish(out, registered_plan) == (8, 0)
    board.regenerate()
    return board


def _cards(board):
    return sorted(board.cards_dir.rglob("*.json"))


def test_published_board_passes_check_and_names_every_attack(board, capsys):
    assert board.check() == 8
    page = (board.folder / "LEADERBOARD.md").read_text()
    for section in ("## Summary", "Defenses on digits/tiny-0.1M, knowledge `shadow`", "Attacks, knowledge",
                    "Provenance", "reproduced", "<details>"):  # fmt: skip
        assert section in page
    first_screen = "\n".join(page.splitlines()[:40])
    assert "## Summary" in first_screen and "| defense" in first_screen
    assert page.index("| defense") < page.index("<details>")  # nothing folded displaces the ranking
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


def test_publish_leaves_out_cells_the_registered_suite_no_longer_makes(tiny_run, tmp_path):
    """A resumed run folder keeps the cells of an older version of a suite file: they do not
    describe the suite any more, so publishing them would put rows on the page no command makes."""
    out, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    lines = (run / "results.jsonl").read_text().splitlines()
    older = json.loads(lines[0]) | {"suite": "quick"}  # quick plans no cell with this hash
    (run / "results.jsonl").write_text("\n".join([json.dumps(older), *lines[1:]]) + "\n")
    board = Leaderboard(tmp_path / "leaderboard")
    assert board.publish(run, registered_plan) == (7, 1)
    assert not (board.cards_dir / "quick").exists()


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
    assert board.check() == 9


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


@pytest.mark.parametrize("page", ["LEADERBOARD.md", "site/index.html"])
def test_hand_edited_page_or_site_fails_check(board, page):
    path = board.folder / page
    path.write_text(path.read_text().replace("0.", "0,", 1))
    with pytest.raises(BenchmarkError, match="out of date"):
        board.check()


class _Site(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables, self.images, self.scripts, self.sortable_headers = [], [], 0, 0
        self._in_table = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("link", "iframe") or (tag == "script" and "src" in attrs):
            raise AssertionError(f"external asset <{tag}>")
        if tag == "table":
            self.tables.append(attrs.get("class", ""))
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1
        elif tag == "th":
            self.sortable_headers += 1


def test_site_is_self_contained_with_sortable_tables(board, tmp_path):
    from benchmark.report.render import figure_plan

    site = board.write_site(tmp_path / "site")
    parser = _Site()
    parser.feed(site.read_text())
    assert parser.tables and all("sortable" in classes for classes in parser.tables)
    shown, folded = figure_plan(board.load())
    assert len(parser.images) == len(shown) + len(folded)
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert parser.scripts == 1 and parser.sortable_headers > 10


def test_the_published_board_is_the_published_suites_as_registered(request):
    """Every published card is a cell of today's published suites (same hash), and every cell is
    published: so the page covers every registered attack and defense, and no change silently
    invalidated it."""
    from benchmark.api.registry import ATTACKS, DEFENSES
    from benchmark.report.leaderboard import PUBLISHED_SUITES
    from benchmark.run.runner import planned_hashes
    from benchmark.run.suite import load_suite

    attacks, defenses = set(), set()
    for name in PUBLISHED_SUITES:
        suite = load_suite(name)
        planned = planned_hashes(suite)
        cards_dir = request.config.rootpath / "leaderboard" / "cards" / name
        published = {json.loads(path.read_text())["config_hash"] for path in cards_dir.glob("*.json")}
        assert published == planned, name
        attacks |= {a.name for a in suite.attacks}
        defenses |= {d.name for d in suite.defenses}
    # no published dataset has captions: caption-conditioned attacks (CLiD) are on the text-to-image path only
    assert attacks == {e.name for e in ATTACKS.entries() if not e.cls.requires_captions}
    assert defenses == {e.name for e in DEFENSES.entries()}


def test_every_figure_draws_an_attack_in_its_page_colour_and_the_open_roc_at_most_six(board, tmp_path, monkeypatch):
    from matplotlib.colors import to_rgb

    import benchmark.report.plots as plots
    from benchmark.report.render import write_figures

    drawn = {}
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: drawn.setdefault(path.name, figure))
    cards = board.load()
    colours = plots.attack_colours(plots.base_attack(c) for c in cards)
    assert colours == plots.attack_colours(reversed([plots.base_attack(c) for c in cards]))  # order-free
    assert len({colour for colour, _ in colours.values()}) == len(colours)
    write_figures(tmp_path, cards, board.load_scores)
    checked = 0
    for figure in drawn.values():
        for axis in figure.axes:
            for line in axis.get_lines():
                name = line.get_label().split(" (")[0]
                if name in colours:
                    assert to_rgb(line.get_color()) == to_rgb(colours[name][0]), name
                    checked += 1
    assert checked >= 8
    (top,) = [figure for name, figure in drawn.items() if name.startswith("roc_top_")]
    attack_lines = [line for line in top.axes[0].get_lines() if line.get_label() != "chance"]
    assert len(attack_lines) <= plots.ROC_SHOWN
