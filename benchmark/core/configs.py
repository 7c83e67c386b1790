"""Plugin configs: plain dataclasses built from presets and suite params, validated at the boundary."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from benchmark.core.errors import BenchmarkError


def _check_type(where: str, key: str, value: Any, annotation: Any) -> Any:
    """Coerce YAML values to the field's declared type, or say what was expected."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(where, key, value, option)
            except BenchmarkError:
                continue
        raise BenchmarkError(f"{where}: '{key}' = {value!r} should be {annotation}")
    if origin is typing.Literal:
        if value not in typing.get_args(annotation):
            choices = ", ".join(repr(c) for c in typing.get_args(annotation))
            raise BenchmarkError(f"{where}: '{key}' = {value!r} is not one of {choices}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise BenchmarkError(f"{where}: '{key}' = {value!r} should be a list")
        args = typing.get_args(annotation)
        item_type = args[0] if args else Any
        items = [_check_type(where, key, item, item_type) for item in value]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(annotation):
        if isinstance(value, annotation):
            return value
        if not isinstance(value, dict):
            raise BenchmarkError(f"{where}: '{key}' should be a mapping of {annotation.__name__} parameters")
        return build_config(annotation, f"{where}: {key}", value)
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise BenchmarkError(f"{where}: '{key}' = {value!r} should be true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BenchmarkError(f"{where}: '{key}' = {value!r} should be an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BenchmarkError(f"{where}: '{key}' = {value!r} should be a number")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise BenchmarkError(f"{where}: '{key}' = {value!r} should be a string")
        return value
    return value


def build_config(config_cls: type, where: str, *layers: dict[str, Any]) -> Any:
    """Merge presets and user params (later wins) into a validated config dataclass."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    hints = typing.get_type_hints(config_cls)
    values: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            if not isinstance(key, str):  # YAML reads a bare null, true or 1 as a key of another type
                raise BenchmarkError(f"{where}: parameter name {key!r} is not a string; quote it (\"{key}\": ...)"
                                     if key is not None else f"{where}: a parameter is named null; quote it: \"null\"")
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"valid: {', '.join(fields)}"
                raise BenchmarkError(f"{where}: unknown parameter '{key}': {hint}")
            values[key] = _check_type(where, key, value, hints[key])
    try:
        config = config_cls(**values)
    except (TypeError, ValueError) as error:
        raise BenchmarkError(f"{where}: {error}") from None
    validate = getattr(config, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as error:
            raise BenchmarkError(f"{where}: {error}") from None
    return config


ADDED_LATER = "added_later"


def added_later(default: Any) -> Any:
    """A config field added after results were published: left out of ``config_dict`` (and so of
    every hash) while it holds its default, so finished cells and cached targets stay valid."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={ADDED_LATER: True})
    return dataclasses.field(default=default, metadata={ADDED_LATER: True})


def config_dict(config: Any) -> dict[str, Any]:
    """The config as hashed and shown on cards."""
    values = dataclasses.asdict(config)
    for spec in dataclasses.fields(config):
        if spec.metadata.get(ADDED_LATER):
            default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
            if values[spec.name] == default:
                del values[spec.name]
    return values
