"""The published leaderboard: one validated card (+ its raw scores) per cell under ``leaderboard/cards``.

Cards are the source of truth. ``publish`` copies a run's cards in; ``regenerate`` rewrites
``LEADERBOARD.md``, the plots and the static site (``site/index.html``) from them; ``check`` fails
when a card is invalid, its metrics do not follow from its own scores, or the page or the site is
not what the cards generate.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.core.errors import BenchmarkError, ManyProblems, first_line
from benchmark.core.hashing import sha256_file
from benchmark.core.storage import atomic_write_bytes, atomic_write_text
from benchmark.records.card import Card
from benchmark.records.metrics import point_metrics
from benchmark.records.store import ResultStore
from benchmark.report.render import Page, leaderboard_html, leaderboard_markdown, page, plot_names, write_outputs

DEFAULT_DIR = Path("leaderboard")
# the suites the committed page is built from (each runs cold in about an hour on 2 CPU cores);
# `memorising` (8×8 digits, query budgets, from-scratch DP) stays runnable but is not republished
PUBLISHED_SUITES = ("full", "defenses", "regimes")
TOLERANCE = 1e-9


def card_stem(card: Card) -> str:
    parts = [card.dataset, card.target, card.defense, f"seed{card.seed}", card.attack, card.knowledge]
    return "__".join(re.sub(r"[^A-Za-z0-9_-]+", "-", str(p)) for p in parts)


def read_scores(path: Path) -> dict[str, np.ndarray]:
    """A card's scores file: numeric arrays only (``allow_pickle=False``: nothing in it executes);
    anything else, truncated or malformed, is one line naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        reason = first_line(error)
        raise BenchmarkError(f"{path}: not a readable scores file ({reason}); publish the run again") from None
    for key in ("scores", "labels"):
        array = arrays.get(key)
        if array is None or array.ndim != 1 or array.dtype.kind not in "biuf" or not np.isfinite(array).all():
            raise BenchmarkError(f"{path}: '{key}' must be a finite 1-D numeric array; publish the run again")
    if len(arrays["scores"]) != len(arrays["labels"]) or not set(np.unique(arrays["labels"])) == {0, 1}:
        raise BenchmarkError(f"{path}: scores and 0/1 labels of one length (both classes) are needed; publish again")
    return arrays


def verify_against_scores(card: Card, scores: dict[str, np.ndarray], where: str) -> None:
    """The headline metrics must follow from the stored scores: a hand-edited number does not."""
    recomputed = point_metrics(scores["labels"], scores["scores"])
    for name, value in recomputed.items():
        if abs(card.metric(name) - value) > TOLERANCE:
            raise BenchmarkError(
                f"{where}: '{name}' is {card.metric(name)} but its scores give {value:.6f}; cards are generated, "
                "not edited: rerun the cell and publish again"
            )
    if (int(scores["labels"].sum()), int((scores["labels"] == 0).sum())) != (card.n_members, card.n_nonmembers):
        raise BenchmarkError(f"{where}: n_members/n_nonmembers do not match its scores file")


class Leaderboard:
    def __init__(self, folder: Path = DEFAULT_DIR) -> None:
        self.folder = Path(folder)
        self.cards_dir = self.folder / "cards"
        self.site_page = self.folder / "site" / "index.html"

    def load(self) -> list[Card]:
        """Every card, validated as a :class:`Card` and against its own scores; every bad file is
        named on its own line (``ManyProblems``), none stops the others being checked."""
        cards, problems = [], []
        for path in sorted(self.cards_dir.rglob("*.json")):
            try:
                cards.append(self._load_card(path))
            except BenchmarkError as error:
                problems.append(str(error))
        if problems:
            raise ManyProblems(problems) if len(problems) > 1 else BenchmarkError(problems[0])
        if not cards:
            raise BenchmarkError(
                f"no cards under {self.cards_dir}; publish a run with `leaderboard --publish runs/full`"
            )
        return cards

    def _load_card(self, path: Path) -> Card:
        where = str(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise BenchmarkError(f"{where}: not readable JSON ({error}); restore it from git") from None
        card = Card.parse(data, where).with_path(str(path))
        scores_path = path.with_suffix(".npz")
        if card.scores_sha256 is None or not scores_path.is_file():
            raise BenchmarkError(f"{where}: its scores file {scores_path.name} is missing; publish the run again")
        if sha256_file(scores_path) != card.scores_sha256:
            raise BenchmarkError(f"{where}: {scores_path.name} does not match the card's scores_sha256")
        verify_against_scores(card, read_scores(scores_path), where)
        return card

    def load_scores(self, card: Card) -> dict[str, np.ndarray]:
        return read_scores(Path(card.path).with_suffix(".npz"))

    def publish(
        self, run_dir: Path, plan: Callable[[str], set[str] | None], provenance: str = "reproduced"
    ) -> tuple[int, int]:
        """Copy in the cards a registered suite still plans (a resumed run folder can hold cells of
        an older version of the file, which no longer describe the suite); (copied, left out).
        ``plan``: a suite name's planned cell hashes, ``None`` for a suite no file registers (copied
        whole); the runner's ``registered_plan``, passed in because the page knows nothing of suites."""
        store = ResultStore(run_dir)
        if not store.cards:
            raise BenchmarkError(f"{run_dir} holds no results.jsonl cards; run a suite into it first")
        plans = {name: plan(name) for name in {c.suite for c in store.cards}}
        current = [c for c in store.cards if plans[c.suite] is None or c.config_hash in plans[c.suite]]
        for card in current:
            scores_file = store.scores_path(card)
            stem = self.cards_dir / card.suite / card_stem(card)
            scores_path, card_path = stem.parent / f"{stem.name}.npz", stem.parent / f"{stem.name}.json"
            atomic_write_bytes(scores_path, scores_file.read_bytes())
            update = {"provenance": provenance, "scores_sha256": sha256_file(scores_path)}
            published = Card.parse(card.to_dict() | update, str(scores_file))
            atomic_write_text(card_path, published.to_json(indent=1) + "\n")
        return len(current), len(store.cards) - len(current)

    def regenerate(self) -> int:
        cards = self.load()
        content = write_outputs(self.folder, cards, self.load_scores, console_table=False)
        self._write_site(content, self.site_page.parent)
        return len(cards)

    def write_site(self, folder: Path) -> Path:
        """The page as one self-contained HTML file in ``folder`` (figures embedded; opens offline)."""
        return self._write_site(self._page(self.load()), Path(folder))

    def _write_site(self, content: Page, folder: Path) -> Path:
        site = folder / "index.html"
        atomic_write_text(site, leaderboard_html(content, self.folder))
        return site

    def _page(self, cards: list[Card]) -> Page:
        return page(cards, self.load_scores)

    def check(self) -> int:
        cards = self.load()
        content = self._page(cards)
        markdown_page = self.folder / "LEADERBOARD.md"
        plots = plot_names(cards)
        stale = f"run `python -m benchmark leaderboard --dir {self.folder}` and commit the result"
        if not markdown_page.is_file() or markdown_page.read_text() != leaderboard_markdown(content):
            raise BenchmarkError(f"{markdown_page} is out of date with {self.cards_dir}; {stale}")
        missing = [p for p in plots if not (self.folder / p).is_file()]
        if missing:
            raise BenchmarkError(f"{self.folder} lacks the plots {', '.join(missing)}; {stale}")
        if not self.site_page.is_file() or self.site_page.read_text() != leaderboard_html(content, self.folder):
            raise BenchmarkError(f"{self.site_page} is out of date with {self.cards_dir}; {stale}")
        return len(cards)
