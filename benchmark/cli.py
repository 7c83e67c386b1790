"""``python -m benchmark``: run | list | leaderboard | validate | perf | throughput | audit.

Every user mistake ends as one line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from benchmark.core.errors import GATE_EXIT_CODE, BenchmarkError, GateTripped


def one_line(text: str) -> str:
    """Escape line breaks and control characters (a name may contain any), so a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line instead of usage + message
        command = " ".join(["python -m benchmark", *self.prog.split()[1:]])
        self.exit(2, f"error: {one_line(message)} (see `{command} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmark", description="Membership-inference benchmark for diffusion models")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    parser.add_argument(
        "--mixed-precision", default="no", choices=["no", "fp16", "bf16"],
        help="autocast for training and queries (through accelerate); joins every cache key and cell hash",
    )  # fmt: skip
    parser.add_argument("--threads", type=positive_integer, default=None,
                        help="torch CPU threads (default: OMP_NUM_THREADS, else all cores)")  # fmt: skip
    parser.add_argument(
        "--checkpoint-every",
        type=non_negative_integer,
        default=100,
        metavar="STEPS",
        help="training checkpoint interval (0: off)",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a suite: train targets, run attacks, write results")
    run.add_argument("--suite", required=True, help="a registered suite (quick, full) or a YAML path")
    run.add_argument("--out", type=Path, default=None, help="results folder (default: runs/<suite>)")
    run.add_argument("--cache", type=Path, default=None, help="target cache (default: ~/.cache/diffusion-mia-bench)")
    run.add_argument(
        "--executor", choices=["serial", "local", "slurm"], default=None,
        help="where cell groups run: this process (serial, the default), local worker processes, or Slurm jobs",
    )  # fmt: skip
    run.add_argument(
        "--jobs", type=positive_integer, default=None, help="local jobs at a time (implies --executor local)"
    )
    run.add_argument("--partition", default=None, help="Slurm partition")
    run.add_argument("--gpus-per-job", type=non_negative_integer, default=None, help="Slurm GPUs per job")
    run.add_argument("--timeout-min", type=positive_integer, default=None, help="minutes a job may run")
    run.add_argument("--array-parallelism", type=positive_integer, default=None, help="Slurm jobs at a time")

    commands.add_parser("list", help="list attacks, defenses, targets, datasets and suites")

    board = commands.add_parser("leaderboard", help="regenerate (or --check) the published leaderboard from its cards")
    board.add_argument("--dir", type=Path, default=Path("leaderboard"), help="leaderboard folder")
    board.add_argument("--publish", type=Path, default=None, help="copy a run folder's cards in first")
    board.add_argument("--provenance", choices=["reproduced", "claimed"], default="reproduced")
    board.add_argument("--check", action="store_true", help="fail if a card is invalid or the page is stale")
    board.add_argument("--schema", action="store_true", help="rewrite the card JSON schema from the Card class")
    board.add_argument("--site", type=Path, default=None,
                       help="also write the self-contained HTML page (sortable tables, figures) to this folder")

    perf = commands.add_parser("perf", help="measure harness overhead against bare forwards and training loops")
    perf.add_argument("--out", type=Path, default=Path("perf.json"))
    perf.add_argument("--suite", action="append", default=[], help="also time this suite cold and warm (repeatable)")
    perf.add_argument(
        "--jobs", type=positive_integer, action="append", default=[],
        help="time each --suite cold with this many local jobs (repeatable; default 1 and 2)",
    )  # fmt: skip
    perf.add_argument("--tiny", action="store_true", help="tiny sizes: checks that perf works, measures nothing")

    throughput = commands.add_parser(
        "throughput", help="the GPU check: the paper's UNet trained and scored, in images/s"
    )
    throughput.add_argument(
        "--steps", type=positive_integer, default=200, help="training steps timed (after a warm-up)"
    )
    throughput.add_argument("--images", type=positive_integer, default=10000, help="images each attack scores")
    throughput.add_argument("--tiny", action="store_true", help="a tiny UNet and few images: checks that it runs")

    validate = commands.add_parser("validate", help="check a contribution: registries, smoke run, cards, leaderboard")
    validate.add_argument("--leaderboard", type=Path, default=Path("leaderboard"))

    audit = commands.add_parser("audit", help="attack a diffusers model folder with your own image folders")
    audit.add_argument("--model", type=Path, required=True,
                       help="diffusers DDPM/DDIM or StableDiffusion pipeline folder, or a UNet2DModel folder")
    audit.add_argument("--lora", type=Path, default=None, help="a LoRA adapter folder (save_lora_weights) on --model")
    audit.add_argument("--caption-column", default="text",
                       help="the caption key in each folder's metadata.jsonl (text-to-image models)")
    audit.add_argument("--members", type=Path, required=True, help="folder of images the model was trained on")
    audit.add_argument("--nonmembers", type=Path, required=True, help="folder of images it never saw")
    audit.add_argument("--attack", action="append", default=[], help="attack name (repeatable; default: gray-box)")
    audit.add_argument("--out", type=Path, default=Path("runs/audit"))
    audit.add_argument("--calibration-fraction", type=float, default=0.25)
    audit.add_argument("--seed", type=non_negative_integer, default=0)
    audit.add_argument("--quiet", action="store_true", help="no tables or verdict on the console (CI)")
    audit.add_argument("--leaderboard", type=Path, default=Path("leaderboard"),
                       help="the published leaderboard whose defenses the report lists")
    audit.add_argument("--fail-if", action="append", default=[], metavar="METRIC>VALUE",
                       help="release gate: exit 3 when any attack's card meets it, e.g. tpr_at_1pct_fpr>0.05")
    return parser


def _run(args: argparse.Namespace) -> None:
    from benchmark.core import runtime
    from benchmark.core.progress import console
    from benchmark.records.store import ResultStore
    from benchmark.report.render import write_outputs
    from benchmark.run.cache import Cache, default_cache_dir
    from benchmark.run.runner import run_suite
    from benchmark.run.suite import load_suite

    suite = load_suite(args.suite)
    out = args.out or Path("runs") / suite.name
    executor = _executor(args, suite.cluster)
    cache = Cache(args.cache or default_cache_dir(), log=console.print)
    cards = run_suite(suite, out, cache, executor=executor)
    if runtime.is_main_process():  # under `accelerate launch` the main process writes the page
        write_outputs(out, cards, ResultStore(out).load_scores)
    console.print(f"results: {out / 'results.jsonl'}  leaderboard: {out / 'LEADERBOARD.md'}")


def _executor(args: argparse.Namespace, options):  # -> SubmititRunner | None
    """The CLI's executor choice over the suite's ``cluster:`` settings; None runs in this process."""
    import dataclasses

    from benchmark.run.executors import SubmititRunner

    kind = args.executor or ("local" if (args.jobs or 1) > 1 else "serial")
    if kind == "serial":
        if args.jobs and args.jobs > 1:
            raise BenchmarkError("--jobs runs local worker processes; drop --executor serial or --jobs")
        return None
    overrides = {"partition": args.partition, "gpus_per_job": args.gpus_per_job, "timeout_min": args.timeout_min,
                 "array_parallelism": args.array_parallelism}  # fmt: skip
    options = dataclasses.replace(options, **{k: v for k, v in overrides.items() if v is not None})
    jobs = args.jobs or (1 if kind == "local" else options.array_parallelism)
    return SubmititRunner(kind, jobs, options, args.threads)


def _list(_: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    from benchmark.api.registry import ATTACKS, DATASETS, DEFENSES, TARGETS
    from benchmark.core.configs import build_config
    from benchmark.run.suite import registered_suites

    table = Table(title="registered components")
    for column in ("kind", "name", "threat model", "passes/sample", "description"):
        table.add_column(column)
    for entry in ATTACKS.entries():
        forward, backward = entry.cls(build_config(entry.cls.Config, entry.name, entry.preset)).expected_passes()
        cost = f"{forward}" + (f" + {backward} bwd" if backward else "")
        table.add_row("attack", entry.name, entry.cls.threat_model.value, cost, entry.description)
    for kind, registry in (("defense", DEFENSES), ("target", TARGETS), ("dataset", DATASETS)):
        for entry in registry.entries():
            table.add_row(kind, entry.name, "", "", entry.description)
    import yaml

    for name, path in registered_suites().items():
        table.add_row("suite", name, "", "", str(yaml.safe_load(path.read_text()).get("description", "")))
    Console(width=180).print(table)


def _leaderboard(args: argparse.Namespace) -> None:
    from benchmark.report.leaderboard import Leaderboard
    from benchmark.run.runner import registered_plan

    if args.schema:
        from benchmark.records.card import write_card_schema

        print(f"wrote {write_card_schema()}")
        return
    board = Leaderboard(args.dir)
    if args.check:
        print(f"{board.check()} cards valid; {args.dir / 'LEADERBOARD.md'} and {board.site_page} are up to date")
        return
    if args.publish:
        copied, left_out = board.publish(args.publish, registered_plan, args.provenance)
        older = f" (left out {left_out} of cells the suite no longer makes)" if left_out else ""
        print(f"published {copied} cards from {args.publish}{older}")
    print(f"regenerated {args.dir / 'LEADERBOARD.md'} and {board.site_page} from {board.regenerate()} cards")
    if args.site:
        print(f"wrote {board.write_site(args.site)}")


def _perf(args: argparse.Namespace) -> None:
    from benchmark.tools.perf import PerfSizes, run_perf

    jobs = list(dict.fromkeys(args.jobs)) or [1, 2]  # once each: a repeated value would reuse a warm cache
    run_perf(args.out, PerfSizes.tiny() if args.tiny else PerfSizes(), args.suite, jobs)


def _throughput(args: argparse.Namespace) -> None:
    from benchmark.core import runtime
    from benchmark.tools.throughput import run_throughput

    runtime.configure(args.device, args.threads, 0, args.mixed_precision)  # no checkpoints inside a timing
    run_throughput(args.steps, args.images, args.tiny)


def _validate(args: argparse.Namespace) -> None:
    from benchmark.tools.validate import run_validation

    run_validation(args.leaderboard)
    print("validate: all checks passed")


def _audit(args: argparse.Namespace) -> None:
    from benchmark.tools.audit import run_audit
    from benchmark.tools.gate import Gate

    gates = [Gate.parse(text) for text in args.fail_if]  # refused before anything is attacked
    cards = run_audit(args.model, args.members, args.nonmembers, args.attack, args.out, args.calibration_fraction,
                      args.seed, quiet=args.quiet, leaderboard=args.leaderboard, lora=args.lora,
                      caption_column=args.caption_column)  # fmt: skip
    for gate in gates:
        gate.check(cards)


def positive_integer(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def non_negative_integer(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from benchmark.core import progress, runtime

    previous = signal.signal(signal.SIGTERM, _interrupted)  # `kill` stops a run as Ctrl-C does
    try:
        runtime.configure(args.device, args.threads, args.checkpoint_every, args.mixed_precision)
        commands = {
            "run": _run,
            "list": _list,
            "audit": _audit,
            "leaderboard": _leaderboard,
            "validate": _validate,
            "perf": _perf,
            "throughput": _throughput,
        }
        commands[args.command](args)
    except GateTripped as tripped:
        print(one_line(tripped), file=sys.stderr)
        return GATE_EXIT_CODE
    except BenchmarkError as error:
        if args.debug:
            raise
        for problem in getattr(error, "problems", None) or [str(error)]:
            print(f"error: {one_line(problem)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            f"interrupted while {progress.doing}: finished cells and training checkpoints are saved; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        return 130
    except Exception as error:  # the last line of defence: still one line, never a traceback
        if args.debug:
            raise
        message = one_line(str(error).strip().splitlines()[0]) if str(error).strip() else ""
        print(
            f"error: unexpected {type(error).__name__}: {message} (rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupted(signum: int, frame: object) -> None:
    """SIGTERM as KeyboardInterrupt: the run stops its workers, keeps finished cells and says how to resume."""
    raise KeyboardInterrupt
