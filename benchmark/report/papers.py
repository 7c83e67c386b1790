"""What the papers report on CIFAR-10, for the page's "how does the ranking compare" line.

AUCs as ``shared/research/attacks.md`` §11 lists them (each from the paper named; they are not
mutually comparable: GSA's target is overfit, ReDiffuse's is a DDIM model with a trained head,
SimA picks t in hindsight). Keys are this benchmark's attack names.
"""

from __future__ import annotations

CIFAR10_AUC: dict[str, tuple[float, str]] = {
    "nais": (0.957, "NAIS Table I"),
    "sima": (0.905, "SimA Table 1"),
    "pia": (0.885, "PIA Table 2"),
    "secmi": (0.881, "NAIS / PIA quoting SecMI"),
    "pian": (0.878, "PIA Table 2"),
    "rediffuse": (0.96, "ReDiffuse Table 1"),
    "secmi_nn": (0.95, "ReDiffuse Table 1 (rerun)"),
    "loss": (0.718, "NAIS Tables I/II (Matsumoto)"),
}
