"""`perf --tiny` runs end to end; the figures themselves are benchmarks, never asserted as wall times."""

import json

from benchmark.cli import main


def test_perf_tiny_writes_every_ratio(tmp_path):
    out = tmp_path / "perf.json"
    assert main(["perf", "--tiny", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    attacks = {row["attack"]: row for row in report["scoring"]}
    assert {"loss", "nais", "pia", "secmi", "sima"} <= set(attacks)
    assert attacks["nais"]["queries_per_sample"] == 5
    assert all(row["overhead"] > 0 for row in report["scoring"])
    assert report["training"]["harness_over_bare"] > 0
    assert len(report["scaling"]["ratios"]) == 2
    gradients = report["gradients"]
    assert gradients["max_relative_difference"] < 1e-4 and gradients["loop_over_batched"] > 0
    calibration = {row["attack"]: row for row in report["calibration"]}
    assert {"gsa", "loss_cal", "nais_cal", "secmi_nn", "sima"} <= set(calibration)
    # the halves query each calibration image in one phase only; the two-pass design queries it twice
    assert calibration["sima"]["two_pass_per_image"] == 2 * calibration["sima"]["passes_per_image"]
    assert all(0 < row["passes_per_image"] <= row["reused_per_image"] < row["two_pass_per_image"]
               for row in calibration.values())  # fmt: skip
