"""Hypothesis feeds malformed suites and argument lists: always one line, a non-zero exit, no traceback."""

import contextlib
import io

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.cli import main
from conftest import tiny_suite_dict

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
MUTABLE_KEYS = ["name", "version", "datasets", "targets", "defenses", "attacks", "seeds", "scoring", "budget", "extra"]


def _run_main(argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse exits
            code = exit_.code
    return code, err.getvalue()


def _assert_one_line_failure(code, err):
    assert code not in (0, None), err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err


@st.composite
def malformed_suites(draw):
    """A tiny suite whose split can never fit the dataset (so nothing trains), mutated at random."""
    suite = tiny_suite_dict(split={"members": 100000, "nonmembers": 2})
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(MUTABLE_KEYS))
        kind = draw(st.sampled_from(["replace", "delete", "nest"]))
        if kind == "delete":
            suite.pop(key, None)
        elif kind == "nest" and isinstance(suite.get(key), list) and suite[key]:
            index = draw(st.integers(0, len(suite[key]) - 1))
            suite[key][index] = draw(junk | st.text(max_size=10) | st.fixed_dictionaries({"name": st.text(max_size=8)}))
        else:
            suite[key] = draw(junk)
    return suite


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suite=malformed_suites())
def test_malformed_suites(tmp_path, suite):
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(suite, allow_unicode=True))
    _assert_one_line_failure(
        *_run_main(["run", "--suite", str(path), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.binary(max_size=200))
def test_garbage_suite_files(tmp_path, text):
    path = tmp_path / "garbage.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    _assert_one_line_failure(
        *_run_main(["run", "--suite", str(path), "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")])
    )


TOKENS = [
    "run",
    "audit",
    "leaderboard",
    "--suite",
    "--out",
    "--cache",
    "--model",
    "--members",
    "--nonmembers",
    "--attack",
    "--check",
    "--dir",
    "--publish",
    "--device",
    "--threads",
    "--checkpoint-every",
    "--seed",
    "--calibration-fraction",
    "quik",
    "nais",
    "/nonexistent",
    "-1",
    "0",
    "cuda",
    "x.yaml",
    "",
    "✓",
    "--",
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(argv=st.lists(st.sampled_from(TOKENS) | st.text(max_size=6), max_size=8))
def test_malformed_argument_lists(tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)  # `leaderboard` with defaults must not touch the repository's board
    code, err = _run_main(argv)
    if code == 0:  # only a plain, valid listing can succeed with these tokens
        assert argv[0] == "list" or "list" in argv
        return
    _assert_one_line_failure(code, err)
