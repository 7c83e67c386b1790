"""`accelerate launch` with 2 CPU processes gives the same results as one process.

Training is data parallel (each process trains on its half of every batch, DDP averages) and every
query batch is split between the processes and gathered back, so the scores agree up to float
tolerance; only the main process writes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import tiny_suite_dict, write_suite

SUITE = tiny_suite_dict(
    name="two-processes",
    split={"members": 16, "nonmembers": 48, "calibration_members": 8, "calibration_nonmembers": 16},
    targets=[
        {
            "name": "ddpm_unet",
            "label": "tiny",
            "params": {"block_out_channels": [16, 32], "train_steps": 60, "batch_size": 24, "learning_rate": 0.002},
        }
    ],  # fmt: skip
    attacks=["nais", "loss", "pia", "rediffuse"],
    scoring={"bootstrap": 50, "batch_size": 40},
)


def _run(command: list[str], cwd) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _cards(out) -> dict[str, dict]:
    cards = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {card["attack"]: card for card in cards}


def test_two_process_launch_matches_one_process(tmp_path, request):
    suite = write_suite(tmp_path, SUITE)
    common = ["--device", "cpu", "--threads", "1", "run", "--suite", str(suite)]
    _run([sys.executable, "-m", "benchmark", *common, "--out", str(tmp_path / "one"), "--cache", str(tmp_path / "c1")],
         request.config.rootpath)  # fmt: skip
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                "--num_cpu_threads_per_process", "1"]  # fmt: skip
    _run([*launcher, "-m", "benchmark", *common, "--out", str(tmp_path / "two"), "--cache", str(tmp_path / "c2")],
         request.config.rootpath)  # fmt: skip
    one, two = _cards(tmp_path / "one"), _cards(tmp_path / "two")
    assert set(one) == set(two) == {"nais", "loss", "pia", "rediffuse"}
    for attack in one:
        assert (one[attack]["processes"], two[attack]["processes"]) == (1, 2)
        assert one[attack]["config_hash"] == two[attack]["config_hash"]
        assert one[attack]["queries_per_sample"] == two[attack]["queries_per_sample"]
        a = np.load(tmp_path / "one" / "scores" / f"{attack}-{one[attack]['config_hash'][:16]}.npz")["scores"]
        b = np.load(tmp_path / "two" / "scores" / f"{attack}-{two[attack]['config_hash'][:16]}.npz")["scores"]
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4, err_msg=attack)
        assert abs(one[attack]["auc"] - two[attack]["auc"]) < 0.02
    # one writer: a single results file, each card once
    assert len((tmp_path / "two" / "results.jsonl").read_text().splitlines()) == 8
