"""Where a suite's cell groups run: in this process, in local worker processes, or as Slurm jobs.

A cell group is everything one trained target serves (dataset × target × defense × seed: training
under the defense, then its attacks); groups are independent, so they are the unit of a job. Jobs
run on submitit (its local executor here, its Slurm executor on a cluster). Each job writes its
cards into its own folder under ``<out>/jobs/``; the parent merges them into the run folder as jobs
finish, so a failed or killed job loses only its unfinished cells, and running the same command
again resubmits only what is missing. The content-addressed cache is shared by every job (its file
locks make that safe), so on a cluster ``--out`` and ``--cache`` must be on a shared filesystem.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from benchmark.core import progress, runtime
from benchmark.core.errors import BenchmarkError
from benchmark.core.hashing import sha256_json
from benchmark.core.progress import console
from benchmark.records.store import ResultStore
from benchmark.run.cluster import ClusterOptions

Kind = Literal["serial", "local", "slurm"]
POLL_SECONDS = 1.0
STOP_GRACE_SECONDS = 5.0


@dataclass
class GroupJob:
    """What one job needs to rebuild and run its cell group in a fresh process."""

    suite: object  # the parsed Suite (pickled by submitit; plugin classes travel by reference)
    key: tuple[str, str, str, int]  # (dataset, target, defense labels, seed)
    cells: list[str]  # the ids of the cells still to run
    out: Path  # this job's own result folder
    cache: Path
    settings: dict  # runtime.configure arguments

    @property
    def name(self) -> str:
        return "/".join(map(str, self.key))


def job_folder(out: Path, key: tuple) -> Path:
    return Path(out) / "jobs" / sha256_json(list(key))[:16]


def merge_job_results(store: ResultStore, folder: Path) -> int:
    """Copy every card (and its scores) a job folder holds into the run folder; idempotent."""
    job_store = ResultStore(folder)
    for card in job_store.cards:
        if not store.has(card.config_hash):
            store.add(card, job_store.load_scores(card))
    for target_hash, utility in {c.target_hash: c.utility for c in job_store.cards}.items():
        store.set_utility(target_hash, utility)  # cards finished earlier for that target get it too
    return len(job_store.cards)


def merge_all_job_results(store: ResultStore) -> None:
    """A parent killed while jobs ran left their cards in ``jobs/``: take them before planning."""
    for folder in sorted((store.out / "jobs").glob("*/")):
        if (folder / "results.jsonl").is_file():
            merge_job_results(store, folder)


class SubmititRunner:
    """Submits one job per pending cell group and merges results as jobs finish.

    ``local``: at most ``jobs`` worker processes at a time, each with cores ÷ jobs threads.
    ``slurm``: one job array; Slurm runs ``array_parallelism`` of them at a time.
    """

    def __init__(self, kind: Kind, jobs: int, options: ClusterOptions, threads: int | None = None) -> None:
        self.kind, self.jobs, self.options, self.threads = kind, jobs, options, threads

    def executor(self, folder: Path):  # -> submitit.Executor
        import submitit

        if self.kind == "local":
            executor = submitit.LocalExecutor(folder)
            executor.update_parameters(timeout_min=self.options.timeout_min)
            return executor
        if not submitit.SlurmExecutor.affinity() > 0:
            raise BenchmarkError("--executor slurm needs Slurm's sbatch and srun on this machine; run it on a "
                                 "cluster's login node, or use --executor local")  # fmt: skip
        executor = submitit.SlurmExecutor(folder)
        executor.update_parameters(**self.options.slurm_parameters())
        return executor

    def sbatch_script(self, jobs: int, folder: Path) -> str:
        """The sbatch file submitit writes for an array of ``jobs`` cell groups (what Slurm receives)."""
        from submitit.slurm.slurm import _make_sbatch_string

        command = "python -u -m submitit.core._submit " + str(folder)
        return _make_sbatch_string(command=command, folder=folder, map_count=jobs, **self.options.slurm_parameters())

    def job_settings(self) -> dict:
        """How each job configures itself: the parent's device and precision; threads as asked
        (``--threads``), else the parent's default threads split between local jobs (two
        single-threaded trainings side by side beat one two-threaded one here), else a Slurm job's CPUs."""
        settings = runtime.settings()
        if self.kind == "local":
            settings["threads"] = self.threads or max(1, runtime.default_threads() // self.jobs)
        else:
            settings["threads"] = self.options.cpus_per_job or self.threads
        return settings

    def run(self, work: list[GroupJob], store: ResultStore, logs: Path, body: Callable[[GroupJob], int]) -> None:
        """Run ``body`` (a module-level function: submitit pickles it by reference) once per job. If
        this process is interrupted (Ctrl-C, or SIGTERM, which the CLI turns into the same), every
        job still running is stopped first: no worker keeps training, or holds a cache lock, after
        the run has ended."""
        executor = self.executor(logs)
        failures: list[str] = []
        pending, running = list(work), []
        try:
            with progress.steps(f"{self.kind} jobs", len(work)) as advance:
                if self.kind == "slurm":
                    running = list(zip(work, executor.map_array(body, work), strict=True))
                    pending = []
                while pending or running:
                    while pending and len(running) < self.jobs:
                        job = pending.pop(0)
                        running.append((job, executor.submit(body, job)))
                    finished = [(job, handle) for job, handle in running if handle.done()]
                    for job, handle in finished:
                        running.remove((job, handle))
                        failures += self._collect(job, handle, store)
                        advance()
                    if running and not finished:
                        time.sleep(POLL_SECONDS)
        except BaseException:
            self._stop([handle for _, handle in running])
            raise
        if failures:
            raise BenchmarkError(f"{len(failures)} of {len(work)} jobs failed ({failures[0]}); the other jobs' "
                                 "cells are saved: run the same command again to resume")  # fmt: skip

    def _stop(self, handles: list) -> None:
        """Slurm jobs are cancelled (scancel); local workers, and whatever they started, are sent
        SIGTERM and, after a grace period, SIGKILL (submitit's own cancel only sends SIGINT, which a
        worker busy in torch may not act on for minutes)."""
        if self.kind == "slurm":
            for handle in handles:
                handle.cancel(check=False)
            return
        workers = psutil.Process().children(recursive=True)
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.terminate()
        _, alive = psutil.wait_procs(workers, timeout=STOP_GRACE_SECONDS)
        for worker in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.kill()
        psutil.wait_procs(alive, timeout=STOP_GRACE_SECONDS)

    @staticmethod
    def _collect(job: GroupJob, handle, store: ResultStore) -> list[str]:
        """Merge what the job finished (all of it, or what it wrote before it died)."""
        try:
            handle.result()
            failure = []
        except Exception as error:  # a job's own error, a kill, a timeout: one line each, with its log
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            failure = [f"{job.name}: {reason[:200]}; log: {handle.paths.stdout}"]
            console.print(f"[red]job {job.name} failed[/]: see {handle.paths.stdout}")
        merge_job_results(store, job.out)
        return failure
