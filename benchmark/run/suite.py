"""Suite files: YAML that names datasets, targets, defenses, attacks, seeds and sizes.

Everything is validated here, before any training starts, so a typo costs a second, not a run.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from benchmark.api.registry import ATTACKS, DATASETS, DEFENSES, TARGETS, Registry
from benchmark.core.configs import build_config, config_dict
from benchmark.core.errors import BenchmarkError
from benchmark.core.names import check_name
from benchmark.core.protocol import HEADLINE_KNOWLEDGE, Knowledge
from benchmark.run.cluster import ClusterOptions
from benchmark.run.splits import SplitSizes
from benchmark.run.targets import incompatibility


@dataclass
class Component:
    """A registered plugin with its resolved config; ``label`` tells two configs of one plugin apart.

    ``seeds`` (defenses) limits a component to some of the suite's seeds, ``defenses`` (attacks,
    budget points) to some defenses, and ``knowledge`` (attacks) to some knowledge levels: they
    choose which cells exist, never what a cell computes, so they stay out of ``description`` and
    of every hash (a cell's knowledge joins its hash on its own). ``split`` (targets) overrides
    the suite's split sizes for one target (a training-set-size sweep lists one target per size);
    the sizes a cell uses join its hash.
    """

    registry: str
    name: str
    label: str
    config: Any
    budget: dict | None = None
    seeds: list[int] | None = None
    defenses: list[str] | None = None
    knowledge: list[str] | None = None
    split: SplitSizes | None = None

    def instantiate(self) -> Any:
        return REGISTRIES[self.registry].get(self.name).cls(self.config)

    @property
    def description(self) -> dict:
        return {"name": self.name, "label": self.label, "config": config_dict(self.config)}


@dataclass
class Scoring:
    batch_size: int = 256
    bootstrap: int = 1000

    def validate(self) -> None:
        if self.batch_size < 1 or self.bootstrap < 10:
            raise ValueError("batch_size must be ≥ 1 and bootstrap ≥ 10")


@dataclass
class Suite:
    name: str
    version: int
    description: str
    datasets: list[Component]
    targets: list[Component]
    defenses: list[Component]
    attacks: list[Component]
    seeds: list[int]
    split: SplitSizes
    scoring: Scoring = field(default_factory=Scoring)
    knowledge: list[Knowledge] = field(default_factory=lambda: [HEADLINE_KNOWLEDGE])
    shadows: int = 1
    cluster: ClusterOptions = field(default_factory=ClusterOptions)  # how jobs run; never part of a hash

    def defenses_for(self, seed: int) -> list[Component]:
        return [d for d in self.defenses if d.seeds is None or seed in d.seeds]

    def attacks_for(self, defense: Component) -> list[Component]:
        return [a for a in self.attacks if a.defenses is None or defense.label in a.defenses]

    def knowledge_for(self, attack: Component) -> list[Knowledge]:
        return attack.knowledge or self.knowledge

    def split_for(self, target: Component) -> SplitSizes:
        return target.split or self.split


KNOWLEDGE_LEVELS = [level.value for level in Knowledge]


def baseline_defense() -> str:
    """The registered undefended reference (its class declares ``baseline``): a suite's default defense."""
    return next(entry.name for entry in DEFENSES.entries() if entry.cls.baseline)


REGISTRIES: dict[str, Registry] = {
    "datasets": DATASETS,
    "targets": TARGETS,
    "defenses": DEFENSES,
    "attacks": ATTACKS,
}
TOP_LEVEL = {
    "name",
    "version",
    "description",
    "datasets",
    "targets",
    "defenses",
    "attacks",
    "seeds",
    "split",
    "scoring",
    "budget",
    "cluster",
    "knowledge",
    "shadows",
}
REQUIRED = {"datasets", "targets", "attacks", "seeds"}


def suites_dir() -> Path:
    return Path(str(resources.files("benchmark") / "suites"))


def registered_suites() -> dict[str, Path]:
    return {p.stem: p for p in sorted(suites_dir().glob("*.yaml"))}


def resolve_suite_path(name_or_path: str) -> Path:
    known = registered_suites()
    if name_or_path in known:
        return known[name_or_path]
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise BenchmarkError(f"suite file {path} does not exist; pass a registered suite or a YAML path")
        return path
    close = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"registered suites: {', '.join(known)}"
    raise BenchmarkError(f"unknown suite '{name_or_path}': {hint}")


def load_suite(name_or_path: str) -> Suite:
    path = resolve_suite_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise BenchmarkError(f"{path}: not valid YAML{where}; check indentation and colons") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BenchmarkError(f"cannot read suite {path}: {error}") from None
    return parse_suite(raw, default_name=path.stem, where=str(path))


def parse_suite(raw: Any, default_name: str, where: str) -> Suite:
    if not isinstance(raw, dict):
        raise BenchmarkError(f"{where}: a suite is a YAML mapping with keys {', '.join(sorted(REQUIRED))}")
    for key in raw:
        if key not in TOP_LEVEL:
            _unknown("key", key, sorted(TOP_LEVEL), "valid keys", where)
    missing = REQUIRED - set(raw)
    if missing:
        raise BenchmarkError(f"{where}: missing key(s) {', '.join(sorted(missing))}")
    seeds = raw["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds):
        raise BenchmarkError(f"{where}: 'seeds' must be a non-empty list of non-negative integers")
    version = raw.get("version", 1)
    if type(version) is not int:
        raise BenchmarkError(f"{where}: 'version' must be an integer")
    suite = Suite(
        name=check_name(raw.get("name", default_name), "the suite name", where),
        version=version,
        description=str(raw.get("description", "")),
        datasets=_components(raw, "datasets", where),
        targets=_components(raw, "targets", where, _mapping(raw, "split", where)),
        defenses=_components({"defenses": raw.get("defenses", [baseline_defense()])}, "defenses", where),
        attacks=_components(raw, "attacks", where) + _budget(raw.get("budget") or [], where),
        seeds=list(dict.fromkeys(seeds)),
        split=build_config(SplitSizes, f"{where}: split", _mapping(raw, "split", where)),
        scoring=build_config(Scoring, f"{where}: scoring", _mapping(raw, "scoring", where)),
        knowledge=_knowledge(raw.get("knowledge", [HEADLINE_KNOWLEDGE.value]), f"{where}: knowledge"),
        shadows=_shadow_count(raw.get("shadows", 1), where),
        cluster=build_config(ClusterOptions, f"{where}: cluster", _mapping(raw, "cluster", where)),
    )
    _check_subsets(suite, where)
    _check_compatible(suite, where)
    _check_knowledge(suite, where)
    return suite


def _knowledge(levels: Any, where: str) -> list[Knowledge]:
    if isinstance(levels, str):
        levels = [levels]
    if not isinstance(levels, list) or not levels:
        raise BenchmarkError(f"{where}: a non-empty list of knowledge levels ({', '.join(KNOWLEDGE_LEVELS)})")
    for level in levels:
        if level not in KNOWLEDGE_LEVELS:
            _unknown("knowledge level", level, list(KNOWLEDGE_LEVELS), "levels", where)
    return [Knowledge(level) for level in dict.fromkeys(levels)]


def _unknown(what: str, value: Any, known: list[str], listed_as: str, where: str) -> None:
    close = difflib.get_close_matches(str(value), known, n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"{listed_as}: {', '.join(known)}"
    raise BenchmarkError(f"{where}: unknown {what} '{value}': {hint}")


def _shadow_count(value: Any, where: str) -> int:
    # one shadow's members and non-members are the calibration set; pooling several shadows needs
    # a view that routes each image to its own shadow, which no attack interface offers yet
    if value != 1:
        raise BenchmarkError(f"{where}: 'shadows' must be 1 (calibration on several pooled shadows is not supported)")
    return value


def _check_knowledge(suite: Suite, where: str) -> None:
    """Attacks that learn from labelled images cannot run under ``none``; shadows need a target the
    harness trains (a model loaded as given has no recipe to train shadows with). An attack may be
    listed twice, with the same settings under other knowledge levels (say, ``target-members`` on the
    undefended target only), so one attack keeps one name on the page."""
    first: dict[str, Component] = {}
    levels_so_far: dict[str, set[str]] = {}
    for attack in suite.attacks:
        levels = suite.knowledge_for(attack)
        earlier = first.setdefault(attack.label, attack)
        taken = levels_so_far.setdefault(attack.label, set())
        if earlier.config != attack.config or taken & set(levels):
            raise BenchmarkError(
                f"{where}: 'attacks' lists '{attack.label}' twice; repeat an attack only with the same settings under "
                "other knowledge levels, or give one entry a distinct 'label'"
            )
        taken.update(levels)
        if any(not level.calibrates for level in levels) and attack.instantiate().needs_calibration():
            raise BenchmarkError(
                f"{where}: attack '{attack.label}' learns from calibration data, which knowledge 'none' does not "
                "grant; give the entry 'knowledge: [shadow]' or drop 'none'"
            )
        if Knowledge.SHADOW in levels:
            for target in suite.targets:
                if not target.instantiate().trains():
                    raise BenchmarkError(
                        f"{where}: target '{target.label}' is attacked as given, so no shadow can be trained with its "
                        "recipe; use 'knowledge: [target-members]'"
                    )


def _check_compatible(suite: Suite, where: str) -> None:
    """Every target × defense and target × attack pair the suite makes must be possible, as the
    plugins declare on their classes; refused here, before anything trains."""
    for defense in suite.defenses:
        if defense.instantiate().uses_public_data() and not all(suite.split_for(t).public for t in suite.targets):
            raise BenchmarkError(
                f"{where}: defense '{defense.label}' pretrains on public images but the split has none; "
                "add 'public: N' under split"
            )
    for target in suite.targets:
        instance = target.instantiate()
        for defense in suite.defenses:
            problem = incompatibility(instance, defense.instantiate(), target.label, defense.label)
            if problem:
                raise BenchmarkError(f"{where}: {problem}")
        for attack in suite.attacks:
            if REGISTRIES["attacks"].get(attack.name).cls.requires_captions and not instance.text_conditioned:
                raise BenchmarkError(
                    f"{where}: attack '{attack.label}' conditions on captions, which target '{target.label}' does not "
                    "take; pair it with a text_to_image target or drop it"
                )


def _check_subsets(suite: Suite, where: str) -> None:
    defense_labels = [d.label for d in suite.defenses]
    for defense in suite.defenses:
        if defense.seeds is not None and not set(defense.seeds) <= set(suite.seeds):
            raise BenchmarkError(f"{where}: defense '{defense.label}' lists seeds that are not in 'seeds'")
    for attack in suite.attacks:
        unknown = set(attack.defenses or []) - set(defense_labels)
        if unknown:
            raise BenchmarkError(
                f"{where}: attack '{attack.label}' names unknown defense(s) {', '.join(sorted(unknown))}; "
                f"defenses in this suite: {', '.join(defense_labels)}"
            )


def _budget(sweeps: Any, where: str) -> list[Component]:
    """Expand ``budget: [{attack, param, values}]`` into one attack component per value.

    Each point is an ordinary cell with its own card; ``budget`` on the card says which knob it
    turned, so the renderer can draw AUC against measured queries.
    """
    if not isinstance(sweeps, list):
        raise BenchmarkError(f"{where}: 'budget' must be a list of {{attack, param, values}} mappings")
    components = []
    for sweep in sweeps:
        keys = set(sweep) if isinstance(sweep, dict) else set()
        if (
            not {"attack", "param", "values"} <= keys
            or keys - {"attack", "param", "values", "defenses"}
            or not sweep["values"]
        ):
            raise BenchmarkError(
                f"{where}: each budget entry needs 'attack', 'param' and non-empty 'values' (optional: 'defenses')"
            )
        defenses = sweep.get("defenses")
        if defenses is not None and (not isinstance(defenses, list) or not defenses):
            raise BenchmarkError(f"{where}: a budget entry's 'defenses' must be a non-empty list of defense labels")
        entry = ATTACKS.get(str(sweep["attack"]))
        for value in sweep["values"]:
            label = check_name(f"{entry.name}.{sweep['param']}-{value}", "the budget label", where)
            config = build_config(entry.cls.Config, f"{where}: budget '{label}'", entry.preset, {sweep["param"]: value})
            budget = {"attack": entry.name, "param": sweep["param"], "value": value}
            only = None if defenses is None else [str(d) for d in defenses]
            components.append(Component("attacks", entry.name, label, config, budget, defenses=only))
    return components


def _mapping(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise BenchmarkError(f"{where}: '{key}' must be a mapping of parameters")
    return value


def _components(raw: dict, key: str, where: str, suite_split: dict | None = None) -> list[Component]:
    items = raw[key]
    if not isinstance(items, list) or not items:
        raise BenchmarkError(f"{where}: '{key}' must be a non-empty list")
    components = []
    for item in items:
        if isinstance(item, str):
            item = {"name": item}
        extra = {"defenses": ["seeds"], "attacks": ["knowledge", "defenses"], "targets": ["split"]}.get(key, [])
        allowed = {"name", "label", "params", *extra}
        if not isinstance(item, dict) or "name" not in item or set(item) - allowed:
            raise BenchmarkError(
                f"{where}: each entry of '{key}' is a name or a mapping with 'name', optional "
                + ", ".join(f"'{k}'" for k in ["label", "params", *extra])
            )
        seeds = item.get("seeds")
        if seeds is not None and (not isinstance(seeds, list) or not seeds or not all(type(x) is int for x in seeds)):
            raise BenchmarkError(f"{where}: 'seeds' of {key} '{item['name']}' must be a non-empty list of integers")
        entry = REGISTRIES[key].get(str(item["name"]))
        label = check_name(item.get("label", entry.name), f"the label of {key} '{entry.name}'", where)
        params = item.get("params") or {}
        if not isinstance(params, dict):
            raise BenchmarkError(f"{where}: 'params' of {key} '{label}' must be a mapping")
        config = build_config(entry.cls.Config, f"{where}: {key} '{label}'", entry.preset, params)
        knowledge = _knowledge(item["knowledge"], f"{where}: {key} '{label}'") if "knowledge" in item else None
        defenses = item.get("defenses")
        if defenses is not None and (not isinstance(defenses, list) or not defenses):
            raise BenchmarkError(f"{where}: 'defenses' of {key} '{label}' must be a non-empty list of defense labels")
        split = None
        if "split" in item:
            if not isinstance(item["split"], dict):
                raise BenchmarkError(f"{where}: 'split' of {key} '{label}' must be a mapping of split sizes")
            split = build_config(SplitSizes, f"{where}: split of {key} '{label}'", suite_split or {}, item["split"])
        components.append(Component(key, entry.name, label, config, seeds=seeds, knowledge=knowledge,
                                    defenses=None if defenses is None else [str(d) for d in defenses], split=split))
    labels = [c.label for c in components]
    duplicate = next((x for x in labels if labels.count(x) > 1), None)
    if duplicate and key != "attacks":  # an attack may repeat under other knowledge: `_check_knowledge`
        raise BenchmarkError(f"{where}: '{key}' lists '{duplicate}' twice; give one of them a distinct 'label'")
    return components
