"""Cell groups as jobs: local worker processes give the serial run's cards, a killed run resumes,
and the Slurm path builds the job specification the CLI asked for (and runs on a real cluster
where one answers)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from benchmark.cli import build_parser
from benchmark.records.store import ResultStore
from benchmark.run.cluster import ClusterOptions
from benchmark.run.suite import load_suite
from conftest import tiny_suite_dict

SUITE = tiny_suite_dict(
    name="jobs",
    split={"members": 16, "nonmembers": 32, "calibration_members": 8, "calibration_nonmembers": 16},
    attacks=["nais", "loss"],
    defenses=["none", "augmentation"],
    seeds=[0, 1],
)
SUITE["targets"][0]["params"] = {**SUITE["targets"][0]["params"], "train_steps": 60, "batch_size": 24}
VOLATILE = {"seconds_per_sample", "training"}  # wall-clock timings


def _command(suite, out, cache, *extra):
    return [sys.executable, "-m", "benchmark", "--threads", "1", "run", "--suite", str(suite), "--out", str(out),
            "--cache", str(cache), *extra]  # fmt: skip


def _cards(out):
    return {c.config_hash: {k: v for k, v in c.to_dict().items() if k not in VOLATILE} for c in ResultStore(out).cards}


def test_local_jobs_match_serial_and_resume_after_a_kill(tmp_path, request):
    """SIGTERM to the parent alone (as `kill` or a scheduler sends it) stops every worker it started;
    the same command then resumes to the serial run's cards."""
    root = request.config.rootpath
    suite = tmp_path / "jobs.yaml"
    suite.write_text(yaml.safe_dump(SUITE))
    subprocess.run(_command(suite, tmp_path / "serial", tmp_path / "c1"), cwd=root, check=True, capture_output=True)

    local = _command(suite, tmp_path / "local", tmp_path / "c2", "--jobs", "2")
    first = subprocess.Popen(local, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list((tmp_path / "local" / "jobs").glob("*/results.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.5)
    workers = psutil.Process(first.pid).children(recursive=True)
    assert workers, "no worker process was running"
    first.send_signal(signal.SIGTERM)  # the parent only, mid-run
    assert first.wait(timeout=60) == 130
    survivors = [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert survivors == [], f"{len(survivors)} worker processes outlived the run"
    done_before = len(ResultStore(tmp_path / "local").cards)

    again = subprocess.run(local, cwd=root, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert done_before < 8, "the kill came after every cell had finished; nothing was resumed"
    assert _cards(tmp_path / "local") == _cards(tmp_path / "serial")


def test_a_failed_job_is_one_line_with_its_log_and_keeps_the_others(tmp_path, request):
    broken = dict(SUITE, defenses=["none", {"name": "dpsgd", "label": "dp-ema", "seeds": [0]}], seeds=[0])
    broken["targets"] = [dict(SUITE["targets"][0], params={**SUITE["targets"][0]["params"], "ema_decay": 0.9})]
    suite = tmp_path / "broken.yaml"
    suite.write_text(yaml.safe_dump(broken))
    run = subprocess.run(_command(suite, tmp_path / "out", tmp_path / "cache", "--jobs", "2"),
                         cwd=request.config.rootpath, capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2
    message = run.stderr.strip().splitlines()[-1]
    assert "1 of 2 jobs failed" in message and "log: " in message and "run the same command again" in message
    assert {c.defense for c in ResultStore(tmp_path / "out").cards} == {"none"}  # the other job's cells are kept


def test_the_slurm_job_specification_follows_the_cli_over_the_suite(tmp_path):
    from benchmark.cli import _executor

    suite = load_suite("quick")
    suite.cluster = ClusterOptions(partition="cpu", timeout_min=30, array_parallelism=4)
    args = build_parser().parse_args(["run", "--suite", "quick", "--executor", "slurm", "--partition", "gpu",
                                      "--gpus-per-job", "1", "--timeout-min", "120"])  # fmt: skip
    runner = _executor(args, suite.cluster)
    script = runner.sbatch_script(jobs=6, folder=tmp_path)
    for line in ("--partition=gpu", "--gpus-per-node=1", "--time=120", "--array=0-5%4", "--job-name=mia-bench"):
        assert f"#SBATCH {line}" in script
    assert "submitit.core._submit" in script


@pytest.mark.skipif(shutil.which("sinfo") is None, reason="no Slurm on this machine")
def test_a_real_slurm_cluster_runs_the_suite(tmp_path, request):
    if subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        pytest.skip("Slurm is installed but its controller does not answer")
    suite = tmp_path / "jobs.yaml"
    suite.write_text(yaml.safe_dump(dict(SUITE, seeds=[0], defenses=["none"])))
    root = request.config.rootpath
    subprocess.run(_command(suite, tmp_path / "serial", tmp_path / "c1"), cwd=root, check=True, capture_output=True)
    slurm = subprocess.run(_command(suite, tmp_path / "slurm", tmp_path / "c2", "--executor", "slurm",
                                    "--timeout-min", "10"), cwd=root, capture_output=True, text=True)  # fmt: skip
    assert slurm.returncode == 0, slurm.stderr[-2000:]
    assert _cards(tmp_path / "slurm") == _cards(tmp_path / "serial")
