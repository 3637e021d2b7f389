"""Resolving a job spec from its layers, and writing the resolved spec back as YAML.

Precedence, lowest first: schema defaults < preset < spec file < `--set a.b=value` <
explicit command flags. The preset is chosen by `--preset`, else `--set preset=...`, else
the file's top-level `preset:`, else `testbed`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from advfusion_cli.errors import UserError
from advfusion_cli.spec.diagnostics import spec_error
from advfusion_cli.spec.names import lowercase_first
from advfusion_cli.spec.overrides import (
    EXCLUSIVE_KEYS,
    Key,
    Layer,
    Source,
    coerce_flag,
    merge_layers,
    method_name_of,
    nest,
    parse_set,
    read_value,
)
from advfusion_cli.spec.presets import DEFAULT_PRESET, Preset, get_preset
from advfusion_cli.spec.schema import (
    CHECK_FUSION_INPUTS,
    JobSpec,
    TrainingSpec,
    normalize_method_block,
)
from advfusion_cli.spec.yaml_io import dump_yaml, parse_yaml_text, read_yaml_file

DEFAULT_METHOD = JobSpec.model_fields["method"].default_factory().name
DEFAULT_TRAINING = TrainingSpec().model_dump()
SET_SOURCE = "--set"
FLAG_SOURCE = "the command line"


def resolve_spec(
    spec_path: Path | str | None = None,
    preset: str | None = None,
    sets: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
    check_fusion_inputs: bool = True,
) -> JobSpec:
    """The validated job spec from all layers; UserError (one line) on any problem.

    `flags` maps dotted keys to the values of a command's explicit options; None means the
    option was not given (so it does not override anything). `check_fusion_inputs=False`
    skips the check that a fusion has a language besides its target: for train-adapters,
    which reads a fusion spec only for its adapters' settings."""
    file_values: dict[str, Any] = {}
    lines: dict = {}
    file_source = Source("default")
    if spec_path is not None:
        spec_path = Path(spec_path)
        file_values, lines = read_yaml_file(spec_path)
        file_source = Source(str(spec_path), file=spec_path)
        _normalize_method(file_values, str(spec_path), spec_path, lines)
    return _resolve(file_values, lines, file_source, preset, sets, flags or {}, check_fusion_inputs)


def parse_spec(text: str, name: str = "<spec>") -> JobSpec:
    """A spec from YAML text alone (no presets from the command line, no overrides)."""
    values, lines = parse_yaml_text(text, name)
    _normalize_method(values, name, Path(name), lines)
    return _resolve(values, lines, Source(name, file=Path(name)), None, (), {})


def load_spec(path: Path | str) -> JobSpec:
    """A spec file as written (e.g. a run's job.yaml); a record of a run already made is
    read even if today's checks on a fusion's inputs would refuse it."""
    return resolve_spec(path, check_fusion_inputs=False)


def dump_spec(spec: JobSpec) -> str:
    """The resolved spec as YAML; `parse_spec(dump_spec(spec)) == spec`."""
    return dump_yaml(spec.model_dump(mode="json"))


def _resolve(
    file_values: dict[str, Any],
    lines: dict,
    file_source: Source,
    preset: str | None,
    sets: Sequence[str],
    flags: Mapping[str, Any],
    check_fusion_inputs: bool = True,
) -> JobSpec:
    parsed_sets = [parse_set(item) for item in sets]
    flag_items = [(tuple(key.split(".")), value) for key, value in flags.items()]
    flag_items = [(path, value) for path, value in flag_items if value is not None]

    method_name = _chosen_method(file_values, parsed_sets, flag_items)
    set_layer = nest(
        [(path, read_value(raw, path, method_name, SET_SOURCE)) for path, raw in parsed_sets]
    )
    flag_layer = nest([(path, coerce_flag(value, path, method_name)) for path, value in flag_items])
    _normalize_method(set_layer, SET_SOURCE)
    _normalize_method(flag_layer, FLAG_SOURCE)

    chosen_preset = _choose_preset(preset, set_layer, file_values)
    layers = [
        # Defaults as a layer too, so a flag's `epochs` clears the default `max_steps`.
        Layer(
            {"training": DEFAULT_TRAINING, "method": {"name": DEFAULT_METHOD}}, Source("default")
        ),
        Layer(chosen_preset.values, Source(f"preset '{chosen_preset.name}'")),
        Layer(file_values, file_source, lines),
        Layer(set_layer, Source(SET_SOURCE)),
        Layer(flag_layer, Source(FLAG_SOURCE)),
    ]
    merged, sources = merge_layers(layers)
    _add_preset_method_values(merged, sources, chosen_preset)
    merged["preset"] = chosen_preset.name
    try:
        return JobSpec.model_validate(merged, context={CHECK_FUSION_INPUTS: check_fusion_inputs})
    except ValidationError as err:
        raise spec_error(err, sources, method_name_of(merged) or DEFAULT_METHOD) from None


def _chosen_method(
    file_values: dict[str, Any],
    sets: list[tuple[Key, str]],
    flags: list[tuple[Key, Any]],
) -> str:
    """The method the job ends up with (flags > --set > file > default): the `method`
    keys of --set and flags are checked against this method's settings."""
    for path, value in reversed(flags):
        if path == ("method", "name"):
            return _method_name(value, FLAG_SOURCE)
    for path, raw in reversed(sets):
        if path == ("method", "name"):
            return _method_name(raw, f"{SET_SOURCE} method.name={raw}")
    block = file_values.get("method")
    if isinstance(block, dict) and isinstance(block.get("name"), str):
        return block["name"]  # already canonical (normalised on reading)
    return DEFAULT_METHOD


def _method_name(value: Any, origin: str) -> str:
    try:
        return normalize_method_block({"name": str(getattr(value, "value", value))})["name"]
    except PydanticCustomError as err:
        raise UserError(f"method.name: {err.context['message']} (from {origin})") from None


def _normalize_method(
    values: dict[str, Any], origin: str, file: Path | None = None, lines: dict | None = None
) -> None:
    """Canonical method names (aliases expanded) in one layer; errors name their origin."""
    if "method" not in values:
        return
    try:
        values["method"] = normalize_method_block(values["method"])
    except PydanticCustomError as err:
        key, message = err.context["key"], err.context["message"]
        if file is not None:
            path = tuple(key.split("."))
            found = [
                lines[path[:end]] for end in range(len(path), 0, -1) if path[:end] in (lines or {})
            ]
            line = found[0] if found else None
            raise UserError(
                f"{file}:{line}: {key}: {message}" if line else f"{file}: {key}: {message}"
            ) from None
        raise UserError(f"{key}: {message} (from {origin})") from None


def _choose_preset(explicit: str | None, set_layer: dict, file_values: dict) -> Preset:
    for origin, name in (
        ("--preset", explicit),
        ("--set preset", set_layer.get("preset")),
        ("preset", file_values.get("preset")),
    ):
        if name is None:
            continue
        if not isinstance(name, str):
            raise UserError(f"{origin}: must be a preset name (got {name!r})")
        try:
            return get_preset(name)
        except UserError as err:
            raise UserError(f"{origin}: {lowercase_first(err)}") from None
    return get_preset(DEFAULT_PRESET)


def _add_preset_method_values(merged: dict, sources: dict, preset: Preset) -> None:
    """The preset's per-method values, under whatever the user layers set for the method."""
    method = merged["method"]
    if not isinstance(method, dict) or not isinstance(method.get("name"), str):
        return
    partners = {a[1]: b[1] for a, b in EXCLUSIVE_KEYS if a[0] == "method"}
    partners |= {b: a for a, b in partners.items()}
    for key, value in preset.method_layer(method["name"]).items():
        if key in method or method.get(partners.get(key, "")) is not None:
            continue
        method[key] = value
        sources[("method", key)] = Source(f"preset '{preset.name}'")
