"""The result card: one typed class owns its fields, version, grouping key and JSON round-trip.

``card_schema.json`` beside this file is generated from the class (``python -m benchmark
leaderboard --schema``, and a test keeps it current), never written by hand. The runner and
``audit`` build cards through :func:`benchmark.records.builder.build_card`, and every table, plot
and page reads its typed fields.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from benchmark.core.errors import BenchmarkError
from benchmark.core.names import NAME_PATTERN, NAME_RULE
from benchmark.core.protocol import Knowledge, ThreatModel
from benchmark.core.storage import atomic_write_text

CARD_SCHEMA_VERSION = 2

Fraction = Annotated[float, Field(ge=0, le=1)]
Interval = Annotated[list[Fraction], Field(min_length=2, max_length=2)]
Sha256 = Annotated[str, Field(pattern="^[0-9a-f]{64}$")]
Name = Annotated[str, Field(pattern=NAME_PATTERN)]  # an identifier: see benchmark.core.names
# text a reader sees (configs, versions, costs): data, never markup or a script URL
MARKUP = re.compile(r"[<>]|(?i:\b(?:javascript|vbscript|data)\s*:)")


class FittedThreshold(BaseModel):
    """The threshold fitted on the attacker's calibration data (never on images that trained a head)
    and what it reaches, unchanged, on the evaluated images: a deployable attack's numbers."""

    model_config = ConfigDict(extra="forbid")

    threshold: float
    balanced_accuracy: Fraction
    tpr: Fraction
    fpr: Fraction


class Card(BaseModel):
    """One (dataset, target, defense, seed, attack) cell: what was measured, on what, under which
    assumptions, by which software. Config dicts stay dicts: each plugin owns its config's shape."""

    # enums are stored as their values, so a loaded card compares, prints and groups like the JSON it came from
    model_config = ConfigDict(extra="forbid", title="diffusion-mia-bench result card", use_enum_values=True)

    schema_version: Literal[2] = CARD_SCHEMA_VERSION
    suite: Name
    suite_version: int
    dataset: Name
    dataset_config: dict[str, Any] | None = None
    split_sha256: Sha256
    split_sizes: dict[str, Any] | None = None
    split_indices: dict[str, list[int]] | None = None
    target: Name
    target_config: dict[str, Any] | None = None
    target_hash: Sha256
    training: dict[str, Any] | None = None
    defense: Name
    defense_config: dict[str, Any] | None = None
    defense_costs: dict[str, Any] = Field(default_factory=dict)
    attack: Name
    attack_name: Name | None = None
    attack_config: dict[str, Any]
    budget: dict[str, Any] | None = None
    # what the attacker knew: every choice below (calibration, orientation, threshold) was fitted on
    # a shadow target's images, on labelled target members, or on nothing (see Knowledge);
    # calibration_images are those images' dataset indices (file names in an audit)
    knowledge: Knowledge
    shadows: Annotated[int, Field(ge=0)] = 0
    calibration_images: dict[str, list[int] | list[str]] | None = None
    orientation: Literal[1, -1] = 1
    calibration: dict[str, Any] = Field(default_factory=dict)
    threat_model: ThreatModel
    seed: Annotated[int, Field(ge=0)]
    n_members: Annotated[int, Field(ge=1)]
    n_nonmembers: Annotated[int, Field(ge=1)]
    n_calibration: int | None = None
    auc: Fraction
    asr_best_threshold: Fraction  # the papers' ASR: best balanced accuracy, threshold chosen on these images
    tpr_at_1pct_fpr: Fraction
    tpr_at_0_1pct_fpr: Fraction
    auc_ci: Interval
    asr_best_threshold_ci: Interval
    tpr_at_1pct_fpr_ci: Interval
    tpr_at_0_1pct_fpr_ci: Interval
    tpr_reliable: dict[str, bool]
    at_fitted_threshold: FittedThreshold | None = None
    queries_per_sample: Annotated[float, Field(ge=0)]
    backward_passes_per_sample: Annotated[float, Field(ge=0)] = 0.0
    expected_passes_per_sample: list[int] | None = None
    seconds_per_sample: Annotated[float, Field(ge=0)]
    utility: dict[str, Any]
    config_hash: Sha256
    scores_sha256: Sha256 | None = None
    versions: dict[str, str]
    device: str
    processes: int | None = None
    provenance: Literal["reproduced", "claimed", "audit"]

    _path: str | None = PrivateAttr(default=None)  # where a published card was read from

    @model_validator(mode="after")
    def _no_markup(self) -> Card:
        """No string anywhere in the card (nested configs included) holds markup or a script URL."""
        for path, text in _strings(self.model_dump(mode="json")):
            if MARKUP.search(text):
                raise ValueError(f"'{path}' holds markup or a script URL ({text[:40]!r}); cards carry data only")
        return self

    @property
    def group(self) -> tuple[str, str, str, int]:
        """The trained model a card belongs to: (dataset, target, defense, seed)."""
        return (self.dataset, self.target, self.defense, self.seed)

    @property
    def path(self) -> str | None:
        return self._path

    def with_path(self, path: str) -> Card:
        self._path = path
        return self

    def metric(self, name: str) -> Any:
        """A field by name, for tables that loop over metric names."""
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-able data, without fields an older card never had."""
        return self.model_dump(mode="json", exclude_unset=True)

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=True)

    @classmethod
    def parse(cls, data: Any, where: str) -> Card:
        """A card from JSON-able data, or one line naming the first invalid field."""
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            path = "/".join(map(str, first["loc"])) or "card"
            message = NAME_RULE if first["type"] == "string_pattern_mismatch" else first["msg"]
            raise BenchmarkError(f"{where}: invalid card at '{path}': {message}") from None


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(value, str):
        return [(path or "card", value)]
    if isinstance(value, dict):
        return [item for key, v in value.items() for item in _strings(key, path) + _strings(v, f"{path}/{key}")]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, f"{path}/{i}")]
    return []


SCHEMA_PATH = Path(__file__).with_name("card_schema.json")


def write_card_schema() -> Path:
    atomic_write_text(SCHEMA_PATH, json.dumps(card_schema(), indent=1, sort_keys=True) + "\n")
    return SCHEMA_PATH


def card_schema() -> dict[str, Any]:
    """The JSON schema readers outside Python validate cards with, generated from :class:`Card`."""
    schema = Card.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
