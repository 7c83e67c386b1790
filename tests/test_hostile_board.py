"""Malformed cards and score files from a pull request: ``leaderboard --check`` names every bad
file on a line of its own and exits 2, never with a traceback (a fuzz over 500+ mutations)."""

from __future__ import annotations

import io
import json
import pickle
import shutil

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.report.leaderboard import Leaderboard
from benchmark.run.runner import registered_plan


@pytest.fixture(scope="module")
def board(tiny_run, tmp_path_factory):
    out, _ = tiny_run
    folder = tmp_path_factory.mktemp("fuzz-board")
    board = Leaderboard(folder)
    board.publish(out, registered_plan)
    board.regenerate()
    return folder


VALUES = [None, "", "x", -1, 0, 1.5, 1e308, float("nan"), float("inf"), [], {}, [0.1], {"a": 1}, True, "NaN",
          [None, None], 10**30, "a" * 5000]  # fmt: skip


def _card_mutations(data: dict, rng: np.random.Generator, count: int) -> list[dict | str]:
    keys = sorted(data)
    mutations: list[dict | str] = []
    for i in range(count):
        kind = i % 5
        copy = json.loads(json.dumps(data))
        key = keys[int(rng.integers(len(keys)))]
        if kind == 0:
            del copy[key]
        elif kind == 1:
            copy[f"extra_{i}"] = VALUES[int(rng.integers(len(VALUES)))]
        elif kind == 2:
            copy[key] = VALUES[int(rng.integers(len(VALUES)))]
        elif kind == 3:
            copy[key] = [copy.get(key)] * int(rng.integers(1, 2000))  # huge arrays where a scalar belongs
        else:
            text = json.dumps(data)
            mutations.append(text[: int(rng.integers(0, len(text)))])  # truncated JSON
            continue
        mutations.append(copy)
    return mutations


def _scores_mutations(arrays: dict, rng: np.random.Generator, count: int) -> list[bytes]:
    good = io.BytesIO()
    np.savez(good, **arrays)
    raw = good.getvalue()
    out = []
    for i in range(count):
        kind = i % 6
        buffer = io.BytesIO()
        if kind == 0:
            out.append(raw[: int(rng.integers(0, len(raw)))])
            continue
        if kind == 1:
            np.savez(buffer, scores=np.array([object(), 1], dtype=object), labels=arrays["labels"][:2])
        elif kind == 2:
            np.savez(buffer, scores=np.full(len(arrays["scores"]), np.nan), labels=arrays["labels"])
        elif kind == 3:
            cut = int(rng.integers(0, len(arrays["scores"])))
            np.savez(buffer, scores=arrays["scores"][:cut], labels=arrays["labels"])
        elif kind == 4:
            np.savez(buffer, labels=arrays["labels"])
        else:
            out.append(pickle.dumps(arrays))  # a pickle where a .npz belongs
            continue
        out.append(buffer.getvalue())
    return out


def test_every_malformed_card_or_scores_file_is_one_line_and_exit_2(board, tmp_path, capsys):
    cards = sorted((board / "cards").rglob("*.json"))
    data = json.loads(cards[0].read_text())
    with np.load(cards[0].with_suffix(".npz"), allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files}
    rng = np.random.default_rng(0)
    cases = [("card", m) for m in _card_mutations(data, rng, 420)]
    cases += [("scores", m) for m in _scores_mutations(arrays, rng, 120)]
    assert len(cases) >= 500
    work = tmp_path / "board"
    shutil.copytree(board, work)
    victim = work / cards[0].relative_to(board)
    originals = {path: path.read_bytes() for path in (victim, victim.with_suffix(".npz"))}
    for kind, mutation in cases:
        for path, content in originals.items():  # the one mutated file restored, the rest untouched
            path.write_bytes(content)
        if kind == "card":
            victim.write_text(mutation if isinstance(mutation, str) else json.dumps(mutation))
        else:
            victim.with_suffix(".npz").write_bytes(mutation)
        code = main(["leaderboard", "--check", "--dir", str(work)])
        err = capsys.readouterr().err.strip().splitlines()
        if code == 0:  # a mutation that is still a valid card (an unset optional field)
            assert kind == "card" and err == []
            continue
        assert code == 2 and len(err) == 1 and err[0].startswith("error: "), (kind, err)
        assert "Traceback" not in err[0] and ("unexpected" not in err[0]), (kind, err)


def test_several_bad_cards_are_each_named_on_their_own_line(board, tmp_path, capsys):
    work = tmp_path / "board"
    shutil.copytree(board, work)
    cards = sorted((work / "cards").rglob("*.json"))
    cards[0].write_text("{")
    cards[1].with_suffix(".npz").write_bytes(b"not a zip")
    assert main(["leaderboard", "--check", "--dir", str(work)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and cards[0].name in err[0] and cards[1].name in err[1], err
