"""Kill a run with SIGKILL mid-training and mid-scoring; the rerun must equal an uninterrupted run."""

import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import tiny_suite_dict, write_suite

VOLATILE = {"seconds_per_sample", "training", "versions"}


def _suite(tmp_path):
    suite = tiny_suite_dict(
        attacks=["loss", "sima_mc", "secmi"],
        split={"members": 32, "nonmembers": 400, "calibration_members": 16, "calibration_nonmembers": 32},
    )
    suite["targets"][0]["params"]["train_steps"] = 300
    return write_suite(tmp_path, suite)


def _command(suite, out, cache):
    return [sys.executable, "-m", "benchmark", "--checkpoint-every", "25", "run", "--suite", str(suite),
            "--out", str(out), "--cache", str(cache)]  # fmt: skip


def _numbers(out):
    cards = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {c["attack"]: {k: v for k, v in c.items() if k not in VOLATILE} for c in cards}


def _kill_when(command, ready, timeout=300):
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean")
    suite = _suite(root)
    subprocess.run(_command(suite, root / "out", root / "cache"), check=True, capture_output=True, timeout=600)
    return suite, _numbers(root / "out")


def test_sigkill_mid_training_resumes_from_checkpoint(clean, tmp_path):
    suite, expected = clean
    cache, out = tmp_path / "cache", tmp_path / "out"

    def checkpoint_written():
        metas = list(cache.glob("targets/.scratch-*/checkpoint/meta.json"))
        return bool(metas) and json.loads(metas[0].read_text())["step"] >= 100

    _kill_when(_command(suite, out, cache), checkpoint_written)
    assert not list(cache.glob("targets/*/manifest.json"))  # no half-built target was published
    subprocess.run(_command(suite, out, cache), check=True, capture_output=True, timeout=600)
    cards = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert cards[0]["training"]["resumed_from_step"] >= 100
    assert _numbers(out) == expected


def test_sigkill_mid_scoring_keeps_finished_cells(clean, tmp_path):
    suite, expected = clean
    cache, out = tmp_path / "cache", tmp_path / "out"
    subprocess.run(_command(suite, tmp_path / "warm", cache), check=True, capture_output=True, timeout=600)

    def one_cell_done():
        results = out / "results.jsonl"
        return results.exists() and len(results.read_text().splitlines()) >= 1

    _kill_when(_command(suite, out, cache), one_cell_done)
    finished = len((out / "results.jsonl").read_text().splitlines())
    assert 1 <= finished < 3
    subprocess.run(_command(suite, out, cache), check=True, capture_output=True, timeout=600)
    assert _numbers(out) == expected


def test_a_resume_at_another_thread_count_rewrites_no_finished_card(tmp_path, monkeypatch):
    """Utility is measured once per target and read back from the cache: a resume at 2 threads
    leaves every card that was already final byte for byte as it was. A measurement at another
    thread count may differ in its last digits (float reductions; on the tiny model it happens not
    to), so each measurement here is made to differ, as it may on a real one."""
    import torch

    from benchmark.core import runtime
    from benchmark.run import runner
    from benchmark.run.cache import Cache
    from benchmark.run.runner import run_suite
    from conftest import make_suite, tiny_suite_dict

    measured = []

    def drifting(*args, **kwargs):
        utility = runner_measure(*args, **kwargs)
        measured.append(utility)
        return {**utility, "heldout_denoising_mse": utility["heldout_denoising_mse"] * (1 + 1e-9 * len(measured))}

    runner_measure = runner.measure_utility
    monkeypatch.setattr(runner, "measure_utility", drifting)

    suite = make_suite(tiny_suite_dict(attacks=["loss", "pia"], knowledge=["target-members"]))
    cache = Cache(tmp_path / "cache", log=lambda _: None)
    threads = torch.get_num_threads()
    try:
        runtime.configure("cpu", 1)
        run_suite(suite, tmp_path / "out", cache)
        results = tmp_path / "out" / "results.jsonl"
        lines = results.read_text().splitlines(keepends=True)
        results.write_text(lines[0])  # the run was stopped after its first cell
        runtime.configure("cpu", 2)
        run_suite(suite, tmp_path / "out", cache)
    finally:
        runtime.configure("cpu", threads)
    again = results.read_text().splitlines(keepends=True)
    assert again[0] == lines[0] and len(again) == 2
    assert len(measured) == 1
