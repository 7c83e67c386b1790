"""Conformance checks every attack and defense must pass (scikit-learn's ``utils.estimator_checks``).

They run the real harness on a tiny target trained on real digits (the registered suite
``conformance``), so they live above the runner, apart from the plugin API a plugin imports:

    from benchmark.checks import check_attack, parametrize_with_checks

    check_attack(MyAttack)                       # every check; one AssertionError naming each failure

    @parametrize_with_checks([MyAttack])         # or: each check its own pytest case
    def test_my_attack(check):
        check()
"""

from benchmark.checks.attacks import NULL_TOLERANCE, attack_checks, check_attack
from benchmark.checks.cases import parametrize_with_checks, plugin_checks
from benchmark.checks.common import Check
from benchmark.checks.defenses import check_defense, defense_checks

__all__ = [
    "NULL_TOLERANCE",
    "Check",
    "attack_checks",
    "check_attack",
    "check_defense",
    "defense_checks",
    "parametrize_with_checks",
    "plugin_checks",
]
