"""The one exception type the CLI turns into a single readable line and a non-zero exit."""


class BenchmarkError(Exception):
    """A problem the user can fix; the message names the problem and the fix."""


def first_line(error: BaseException) -> str:
    """What a third-party error says, in one line (its type where it says nothing): for messages
    that name the file or source the error came from."""
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


class ManyProblems(BenchmarkError):
    """Several independent problems (bad files of one folder): the CLI prints one line for each, so
    a contributor fixes them all in one round instead of one per run."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"{len(problems)} problems: " + "; ".join(problems))
        self.problems = problems


class ThreatModelError(BenchmarkError, AttributeError):
    """An attack reached past its declared threat model (an AttributeError too, so hasattr works)."""


GATE_EXIT_CODE = 3


class GateTripped(BenchmarkError):
    """An audited model met a release gate (``audit --fail-if``): its own exit code, so a CI step can
    tell "this model leaks" from "this audit was misconfigured" (exit 2)."""
