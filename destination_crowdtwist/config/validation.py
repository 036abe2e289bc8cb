"""The raw config checked against spec.json with JSON Schema (Draft 7, as Airbyte validates it).

Two steps, driven by the schema (and, for what a hand-written config may leave out, by ``gaps``):

* :func:`normalise` reads the config the way the Airbyte form writes it: null means "not given", and
  so does a blank text value; what is not given takes the spec default; a ``oneOf`` block without its
  discriminator gets the one its ``gaps`` hook infers (or the default option); a block that is only
  a choice among named options (Airbyte's ``format: "CSV"``) may be given as the option's name.
* :func:`validate` runs ``jsonschema`` and turns the first error into a
  :class:`~destination_crowdtwist.api.errors.ConfigError` that names the field (``credentials.api_key``,
  ``field_mapping[0].source``), says what is allowed, and shows what was given, never when the
  property is an ``airbyte_secret``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from destination_crowdtwist.api.errors import ConfigError
from destination_crowdtwist.config.spec import (
    Schema,
    choice_default,
    choices,
    connection_schema,
    discriminator,
    is_free_text,
    option_for,
)

#: Per ``oneOf`` block (by its dotted path, e.g. ``"credentials"``): the values a hand-written config
#: may leave out, inferred from what it does hold. Each applies only where the value is not given.
Gaps = Mapping[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]]


def _given(value: Any, prop: Schema) -> bool:
    return value is not None and not (is_free_text(prop) and isinstance(value, str) and not value.strip())


def _is_choice(schema: Schema) -> bool:
    # A oneOf block whose options hold only fixed values (format, compression) is just a choice of one
    # name; Airbyte writes such a block as that name (format's default is "CSV"), and so may a config.
    return "oneOf" in schema and all(
        "enum" in prop or "const" in prop for option in schema["oneOf"] for prop in option["properties"].values()
    )


def normalise(value: Any, schema: Schema, gaps: Gaps, path: str = "") -> Any:
    """A copy of ``value`` read as the form writes it (see the module docstring); unknown keys are kept."""
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [normalise(item, schema["items"], gaps, path) for item in value]
    if isinstance(value, str) and _is_choice(schema):
        value = {discriminator(schema): value}
    if not isinstance(value, Mapping):
        return value
    inferred = gaps[path](value) if path in gaps else {}
    if "oneOf" in schema:
        key = discriminator(schema)
        value = {**value, key: value[key] if value.get(key) is not None else inferred.get(key, choice_default(schema))}
        # An unknown option keeps no schema here: validation reports the discriminator with the choices.
        schema = option_for(schema, value[key]) or {}
    props: Mapping[str, Schema] = schema.get("properties", {})
    result = {name: item for name, item in value.items() if _given(item, props.get(name, {}))}
    for name, prop in props.items():
        if name not in result and "default" in prop:
            result[name] = copy.deepcopy(prop["default"])
        elif name not in result and name in inferred:
            result[name] = inferred[name]
        if name in result:
            result[name] = normalise(result[name], prop, gaps, f"{path}.{name}" if path else name)
    return result


@cache
def _validator() -> Any:
    # Imported here: `spec` and replay-rejects never validate a config, and start-up time is theirs.
    from jsonschema import Draft7Validator, validators

    def finite_number(_checker: object, instance: object) -> bool:
        # JSON has no NaN or Infinity, but Python's json module reads them; no setting can use one.
        return isinstance(instance, int | float) and not isinstance(instance, bool) and math.isfinite(instance)

    checker = Draft7Validator.TYPE_CHECKER.redefine("number", finite_number)
    return validators.extend(Draft7Validator, type_checker=checker)(connection_schema())


def validate(data: Mapping[str, Any]) -> None:
    """Check normalised ``data`` against the schema.

    Raises:
        ConfigError: for the first error, in the spec's order of properties.
    """
    error = next(iter(_validator().iter_errors(data)), None)
    if error is not None:
        message = _message(_within_option(error))
        raise ConfigError(message)


# --- messages --------------------------------------------------------------------------------------------

_KINDS = {"boolean": "true or false", "integer": "a whole number", "number": "a number", "string": "text",
          "array": "a list", "object": "an object"}


def shown(value: Any) -> str:
    """``value`` for a message: a short printable string quoted (it is a typo the user needs to see);
    anything else only named by type, so a huge or binary value never floods the message or the log.
    """
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    return f"a value of type {type(value).__name__}"


def _holds_secret(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        return schema.get("airbyte_secret") is True or any(_holds_secret(v) for v in schema.values())
    return isinstance(schema, list) and any(_holds_secret(v) for v in schema)


def _got(value: Any, prop: Schema) -> str:
    # A value where a secret belongs (an API key given as the whole credentials block) is not shown.
    return "" if _holds_secret(prop) else f" (got {shown(value)})"


def _path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _one_of(values: list[Any], last: str = ", ") -> str:
    # Plain identifiers read best bare (email, id); anything else is quoted so that blanks, spaces and
    # capitalised words ('', 'No flattening', 'None') are seen as values.
    plain = all(isinstance(v, str) and v and v.replace("_", "").isalnum() and v.islower() for v in values)
    shown_values = [str(v) if plain else repr(v) for v in values]
    return last.join([", ".join(shown_values[:-1]), shown_values[-1]]) if len(values) > 1 else shown_values[0]


def _range(prop: Schema) -> str:
    lo, hi = prop.get("minimum"), prop.get("maximum")
    if lo is not None and hi is not None:
        return f"between {lo:g} and {hi:g}"
    if lo is not None:
        return f"at least {lo:g}"
    return f"at most {hi:g}" if hi is not None else ""


def _required_message(path: str, prop: Schema, option: str | None = None) -> str:
    """``path`` is required, with what to give: the options to choose from, or the property's description."""
    if "oneOf" in prop:
        return f"{path} is required: choose {' or '.join(o['title'] for o in prop['oneOf'])}"
    text = f"{path} is required" + (f" for {option}" if option else "")
    if prop.get("description"):
        return f"{text}: {prop['description']}"
    return f"{text} ({prop['title']})" if prop.get("title") else text


def _within_option(error: Any) -> Any:
    """The error inside the chosen option of a failed ``oneOf`` (the one its discriminator names).

    A ``oneOf`` error is left as it is when the discriminator names no option.
    """
    while error.validator == "oneOf" and isinstance(error.instance, Mapping):
        value = error.instance.get(discriminator(error.schema))
        index = choices(error.schema).index(value) if value in choices(error.schema) else None
        inner = [e for e in error.context if e.relative_schema_path[0] == index]
        if not inner:
            break
        error = inner[0]
    return error


def _message(error: Any) -> str:
    path, schema, value, kind = _path(error.absolute_path), error.schema, error.instance, error.validator
    if kind == "oneOf":
        key = discriminator(schema)
        return f"{_path([*error.absolute_path, key])} must be one of {_one_of(choices(schema))}" + _got(
            value.get(key), {}
        )
    if kind == "required":
        missing = next(name for name in error.validator_value if name not in value)
        # A required field of a oneOf option (not the top level) is named with the option's title.
        option = schema.get("title") if error.absolute_path else None
        return _required_message(_path([*error.absolute_path, missing]), schema["properties"][missing], option)
    if kind == "type" and "enum" not in schema:
        return _type_message(path, schema, value)
    if kind in ("enum", "type"):
        return f"{path} must be one of {_one_of(schema['enum'])}" + _got(value, schema)
    if kind in ("minimum", "maximum"):
        return f"{path} must be {_range(schema)} (got {value:g})"
    if kind == "minLength":
        return f"{path} must not be empty"
    if kind == "additionalProperties":
        unknown = sorted(set(value) - set(schema.get("properties", {})))
        return f"{path} has the unknown key {shown(unknown[0])}; known: {', '.join(schema['properties'])}"
    return f"{path} is not valid ({kind})" + _got(value, schema)


def _type_message(path: str, schema: Schema, value: Any) -> str:
    kind = schema["type"]
    text = f"{path} must be {_KINDS[kind]}"
    if kind in ("integer", "number") and _range(schema):
        text += f" {_range(schema)}"
    elif kind == "object" and "oneOf" in schema:
        text += f" with {discriminator(schema)} {_one_of(choices(schema), ' or ')}"
    elif kind == "array" and schema.get("items", {}).get("type") == "object":
        text += f" of objects with {' and '.join(schema['items'].get('required', []))}"
    elif kind == "array":
        text += f" of {_KINDS[schema.get('items', {}).get('type', 'string')]} values"
    return text + _got(value, schema)
