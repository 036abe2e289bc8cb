"""spec.json read for the configuration: its properties, the options of its ``oneOf`` blocks, and
the Python form of its values.

spec.json is the one definition of every setting (name, type, enum, default, range, title,
description, secrecy). This module only reads it: the model's defaults (:func:`spec_default`), the
schema the raw config is validated against (:func:`connection_schema`) and the generic step from
validated JSON to a dataclass (:func:`build`) all come from here, so no field is listed twice.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pkgutil
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, cast

Schema = Mapping[str, Any]

# Fields of ConnectorConfig that are deliberately not in spec.json: knobs for tests and tools, not
# user settings. Written in the spec's own vocabulary, so they are validated and built the same way.
_INTERNAL_PROPERTIES: dict[str, dict[str, Any]] = {
    # How often the progress line is logged (tests shorten it).
    "progress_interval_seconds": {"type": "number", "default": 10, "minimum": 0, "maximum": 3600},
}
INTERNAL_FIELDS: frozenset[str] = frozenset(_INTERNAL_PROPERTIES)


@cache
def load_spec() -> dict[str, Any]:
    """The connector specification (the packaged copy of the top-level spec.json)."""
    raw = pkgutil.get_data("destination_crowdtwist", "spec.json")
    if raw is None:  # pragma: no cover - packaging error
        raise RuntimeError("spec.json is missing from the destination_crowdtwist package")
    spec: dict[str, Any] = json.loads(raw)
    return spec


@cache
def connection_schema() -> dict[str, Any]:
    """spec.json's ``connectionSpecification`` plus the internal properties: what a config is validated against."""
    schema = copy.deepcopy(load_spec()["connectionSpecification"])
    schema["properties"].update(copy.deepcopy(_INTERNAL_PROPERTIES))
    return cast(dict[str, Any], schema)


def s3_option() -> Schema:
    """The ``storage_type: S3`` option of ``object_storage_config`` (Airbyte's standard block)."""
    block = connection_schema()["properties"]["object_storage_config"]
    option = option_for(block, "S3")
    if option is None:  # pragma: no cover - spec.json edited wrongly
        raise RuntimeError("spec.json object_storage_config has no S3 option")
    return option


# --- oneOf blocks: options told apart by one property with a single value ------------------------------


def _single_value(prop: Schema | None) -> Any:
    if prop is None:
        return None
    if "const" in prop:
        return prop["const"]
    enum = prop.get("enum")
    return enum[0] if isinstance(enum, list) and len(enum) == 1 else None


def discriminator(block: Schema) -> str:
    """The property whose single value tells the options of ``block``'s ``oneOf`` apart
    (``auth_type``, ``storage_type``, ``format_type``, ``compression_type``).
    """
    options = block["oneOf"]
    for name in options[0]["properties"]:
        if all(_single_value(option["properties"].get(name)) is not None for option in options):
            return str(name)
    raise RuntimeError(f"spec.json oneOf without a discriminating property: {block.get('title')!r}")


def choices(block: Schema) -> list[Any]:
    """The discriminator's values, one per option, in the spec's order."""
    key = discriminator(block)
    return [_single_value(option["properties"][key]) for option in block["oneOf"]]


def option_for(block: Schema, value: Any) -> Schema | None:
    """The option of ``block`` whose discriminator is ``value`` (None when no option has it)."""
    key = discriminator(block)
    for option in block["oneOf"]:
        if _single_value(option["properties"][key]) == value:
            return cast(Schema, option)
    return None


def choice_default(block: Schema) -> Any:
    """The option chosen when the discriminator is left out: the block's ``default`` when it names an
    option (Airbyte's format block says ``"default": "CSV"``), else the first option.
    """
    values = choices(block)
    default = block.get("default")
    return default if default in values else values[0]


def flat_properties(option: Schema) -> dict[str, Schema]:
    """``option``'s properties with each nested ``oneOf`` block replaced by its options' properties.

    S3Storage holds ``format`` and ``compression`` flat (``format_type``, ``flattening``,
    ``compression_type``); a nested discriminator's default is the option :func:`choice_default` picks.
    """
    flat: dict[str, Schema] = {}
    for name, prop in option["properties"].items():
        if "oneOf" not in prop:
            flat[name] = prop
            continue
        key = discriminator(prop)
        for inner in prop["oneOf"]:
            for inner_name, inner_prop in inner["properties"].items():
                flat.setdefault(inner_name, inner_prop)
        flat[key] = {"type": "string", "enum": choices(prop), "default": choice_default(prop)}
    return flat


def flatten(option: Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    """Validated ``data`` of ``option`` with its nested ``oneOf`` objects merged in (see :func:`flat_properties`)."""
    flat = {name: value for name, value in data.items() if "oneOf" not in option["properties"].get(name, {})}
    for name, value in data.items():
        if "oneOf" in option["properties"].get(name, {}) and isinstance(value, Mapping):
            flat.update(value)
    return flat


# --- Python forms of spec values ------------------------------------------------------------------------


def is_free_text(prop: Schema) -> bool:
    """A text property without a fixed set of values (trimmed; blank means not given)."""
    return prop.get("type") == "string" and "enum" not in prop and "const" not in prop


def python_value(prop: Schema, value: Any) -> Any:
    """A validated JSON value in the form the model holds it: arrays as tuples (the config is frozen and
    hashable), ``integer`` as int and ``number`` as float (so ``10`` of a number is ``10.0``), free text trimmed.
    """
    kind = prop.get("type")
    if kind == "array":
        return tuple(value)
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if is_free_text(prop) and isinstance(value, str):
        return value.strip()
    return value


class _SpecDefault:
    """A dataclass default read from the spec property named like the field.

    The field's name is only known when the class is created (``__set_name__``); dataclasses then ask
    the descriptor for the default (``__get__`` on the class). So each field is declared once, as
    ``name: Type = spec_default(properties)``, and its default cannot differ from the spec's.
    """

    def __init__(self, properties: Callable[[], Mapping[str, Schema]]) -> None:
        self._properties = properties
        self._value: Any = None

    def __set_name__(self, owner: type, name: str) -> None:
        prop = self._properties().get(name)
        if prop is None:
            raise RuntimeError(f"spec.json has no property {name!r} for {owner.__name__}.{name}")
        self._value = python_value(prop, prop["default"]) if "default" in prop else None

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        return self._value


def spec_default(properties: Callable[[], Mapping[str, Schema]]) -> Any:
    """The default of a model field: the spec default of the property of the same name in
    ``properties()``, in its Python form; None for an optional property without a default.
    """
    return _SpecDefault(properties)


def build(
    cls: type[Any],
    properties: Mapping[str, Schema],
    data: Mapping[str, Any],
    checks: Mapping[str, Callable[[Any], Any]],
) -> Any:
    """An instance of dataclass ``cls`` from validated (and defaulted) ``data``.

    Every field present in ``data`` is taken in the Python form of its spec property, or from its entry
    in ``checks`` (the semantic rules JSON Schema cannot express); absent ones keep the field default.
    """
    values = {}
    for item in dataclasses.fields(cls):
        if item.name not in data:
            continue
        value = data[item.name]
        check = checks.get(item.name)
        values[item.name] = check(value) if check is not None else python_value(properties[item.name], value)
    return cls(**values)
