"""Slurm settings a suite file may carry under ``cluster:``; how jobs run, never part of a hash."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClusterOptions:
    """Slurm settings (ignored by the serial and local executors except ``timeout_min``)."""

    partition: str | None = None
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    timeout_min: int = 24 * 60
    array_parallelism: int = 64

    def slurm_parameters(self) -> dict:
        """submitit's ``SlurmExecutor`` parameters (sbatch's names)."""
        parameters = {"time": self.timeout_min, "array_parallelism": self.array_parallelism,
                      "job_name": "mia-bench", "stderr_to_stdout": True}  # fmt: skip
        if self.partition:
            parameters["partition"] = self.partition
        if self.gpus_per_job:
            parameters["gpus_per_node"] = self.gpus_per_job
        if self.cpus_per_job:
            parameters["cpus_per_task"] = self.cpus_per_job
        return parameters
