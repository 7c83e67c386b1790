"""The run folder: ``results.jsonl`` (one card per cell) and raw scores in ``scores/*.npz``.

Cards already on disk are what lets an interrupted run resume: a cell whose config hash has a
card is not recomputed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.core import runtime
from benchmark.core.errors import BenchmarkError
from benchmark.core.storage import atomic_save_npz, atomic_write_text
from benchmark.records.card import Card


class ResultStore:
    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / "results.jsonl"
        self.cards: list[Card] = self._read()

    def _read(self) -> list[Card]:
        if not self.path.exists():
            return []
        cards = []
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                cards.append(Card.model_validate_json(line))
            except ValueError:
                raise BenchmarkError(
                    f"{self.path} line {number} is not a valid card; delete that line (or the file) and rerun"
                ) from None
        return cards

    def has(self, config_hash: str) -> bool:
        return any(card.config_hash == config_hash for card in self.cards)

    def scores_path(self, card: Card) -> Path:
        return self.out / "scores" / f"{card.attack}-{card.config_hash[:16]}.npz"

    def add(self, card: Card, arrays: dict[str, np.ndarray]) -> None:
        """Scores first, then the card: a card on disk always has its scores beside it."""
        if runtime.is_main_process():
            atomic_save_npz(self.scores_path(card), **arrays)
        self.cards = [c for c in self.cards if c.config_hash != card.config_hash] + [card]
        self._write()

    def set_utility(self, target_hash: str, utility: dict) -> None:
        """Utility belongs to the target, so every card of that target carries the same copy,
        including cards finished before the utility metrics last changed."""
        self.cards = [
            c.model_copy(update={"utility": utility}) if c.target_hash == target_hash else c for c in self.cards
        ]
        self._write()

    def _write(self) -> None:
        if not runtime.is_main_process():
            return  # under several processes the main one writes
        atomic_write_text(self.path, "".join(c.to_json() + "\n" for c in self.cards))

    def load_scores(self, card: Card) -> dict[str, np.ndarray]:
        with np.load(self.scores_path(card), allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
