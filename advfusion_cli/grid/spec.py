"""A grid spec: lists of models, tasks, targets, methods and seeds, and each stage's resources.

    models × tasks × targets  -> one comparison (CompareRequest) per cell, each with every
    method × seed; `resources` says what each kind of stage asks the scheduler for.

Resources are layered: built-in defaults < `resources.default` < `resources.<stage kind>`.
Unknown keys anywhere are one line naming the key (`resources.fusion.partiton: unknown key;
did you mean 'partition'?`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from advfusion_cli.errors import UserError, did_you_mean

STAGE_KINDS = ("adapter", "fusion", "evaluate", "table")
_TIME = re.compile(r"^(?:(\d+)-)?(\d+):(\d{2})(?::(\d{2}))?$")  # [D-]HH:MM[:SS]
_MEM = re.compile(r"^\d+(?:\.\d+)?[KMGT]?B?$", re.IGNORECASE)
_SIGNAL = re.compile(r"^(?:B:)?(?:SIG)?[A-Z0-9]+@\d+$")


def minutes(value: str | int) -> int:
    """A time limit in whole minutes (rounded up), from minutes or [D-]HH:MM[:SS]."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"must be at least 1 minute, got {value}")
        return value
    text = str(value).strip()
    if text.isdigit():
        return minutes(int(text))
    match = _TIME.match(text)
    if match is None:
        raise ValueError(f"takes minutes or [D-]HH:MM[:SS] such as 12:00:00, got '{value}'")
    days, hours, mins, secs = (int(part or 0) for part in match.groups())
    total = days * 24 * 60 + hours * 60 + mins + (1 if secs else 0)
    if total < 1:
        raise ValueError(f"must be at least 1 minute, got '{value}'")
    return total


def sbatch_option(line: str) -> tuple[str, str | bool]:
    """`--qos=high` (or `#SBATCH --qos=high`) -> ("qos", "high"); `--exclusive` -> (.., True)."""
    text = line.strip().removeprefix("#SBATCH").strip()
    if not text.startswith("--") or len(text) < 3 or " " in text.split("=", 1)[0]:
        raise ValueError(f"takes sbatch options such as --qos=high, got '{line}'")
    key, sep, value = text[2:].partition("=")
    return key, (value if sep else True)


class Resources(BaseModel):
    """What one job asks for. None = not said here (a lower layer or the scheduler decides)."""

    model_config = ConfigDict(extra="forbid")

    gpus: int | None = Field(None, ge=0)
    cpus: int | None = Field(None, ge=1)
    mem: str | None = None  # sbatch --mem: 64G, 500M, ...
    time: str | int | None = None  # minutes, or [D-]HH:MM[:SS]
    partition: str | None = None
    account: str | None = None
    # Slurm signals the job this long before its time limit; the stage checkpoints and asks
    # to be requeued (docs/workflows.md#grids-on-a-cluster-slurm).
    signal: str | None = None
    sbatch: list[str] | None = None  # extra sbatch options: "--qos=high", "--constraint=a100"
    setup: list[str] | None = None  # shell lines run before the stage (module load, ...)

    @field_validator("mem")
    @classmethod
    def _mem(cls, value: str | None) -> str | None:
        if value is not None and not _MEM.match(value):
            raise ValueError(f"takes a size such as 64G or 500M, got '{value}'")
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            minutes(value)  # raises ValueError with the reason
        return value

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str | None) -> str | None:
        if value is not None and not _SIGNAL.match(value):
            raise ValueError(f"takes SIGNAL@SECONDS such as USR1@120, got '{value}'")
        return value

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, value: list[str] | None) -> list[str] | None:
        for line in value or ():
            sbatch_option(line)
        return value

    def over(self, lower: Resources) -> Resources:
        """These values where they are set, `lower`'s elsewhere."""
        mine = self.model_dump(exclude_none=True)
        return lower.model_copy(update=mine)


# What a stage asks for when the spec says nothing: a GPU for what loads a model.
BUILTIN = {
    "adapter": Resources(gpus=1, cpus=4, time="24:00:00", signal="USR1@120"),
    "fusion": Resources(gpus=1, cpus=4, time="24:00:00", signal="USR1@120"),
    "evaluate": Resources(gpus=1, cpus=4, time="12:00:00", signal="USR1@120"),
    "table": Resources(gpus=0, cpus=2, time="01:00:00", signal="USR1@120"),
}


class ResourcePlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    default: Resources = Field(default_factory=Resources)
    adapter: Resources = Field(default_factory=Resources)
    fusion: Resources = Field(default_factory=Resources)
    evaluate: Resources = Field(default_factory=Resources)
    table: Resources = Field(default_factory=Resources)

    def for_kind(self, kind: str) -> Resources:
        """A stage kind's resources: built-in < default < its own section. The grid's summary
        runs with the tables' resources."""
        section = "table" if kind == "summary" else kind
        return getattr(self, section).over(self.default.over(BUILTIN[section]))


class EvaluationSettings(BaseModel):
    """compare's evaluation flags, as keys."""

    model_config = ConfigDict(extra="forbid")

    split: str = "test"
    limit: int | None = Field(None, ge=1)
    n: int = Field(1, ge=1)
    temperature: float | None = None
    top_p: float = 1.0
    top_k: int = 0
    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    execute: bool = True
    workers: int | None = Field(None, ge=1)
    metrics: list[str] | None = None
    resamples: int = Field(1000, ge=1)


class GridSpec(BaseModel):
    """Every combination of models × tasks × targets is one comparison of `methods` × `seeds`.
    A list left out keeps compare's default (one value); an empty list is an error."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    models: list[str] | None = None
    tasks: list[str] | None = None
    targets: list[str] | None = None
    methods: list[str] | None = None
    seeds: list[int] | None = None
    langs: list[str] | None = None  # languages the fusions fuse (default: all)
    vary: str | None = None  # compare's --vary KEY=V1,V2
    data: str | None = None
    quantization: str | None = None
    spec: Path | None = None  # a job spec every run starts from (relative to this file)
    preset: str | None = None
    set: list[str] = Field(default_factory=list)
    workdir: Path | None = None
    no_cache: bool = False
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    resources: ResourcePlan = Field(default_factory=ResourcePlan)


def load_grid(path: Path) -> GridSpec:
    """Read and validate a grid spec; any problem is one line naming the file and key."""
    from advfusion_cli.spec.yaml_io import read_yaml_file

    if not path.exists():
        raise UserError(f"grid spec not found: {path}")
    values, lines = read_yaml_file(path)
    grid = parse_grid(values, str(path), lines)
    if grid.spec is not None and not grid.spec.is_absolute():
        grid = grid.model_copy(update={"spec": (path.parent / grid.spec)})
    return grid


def parse_grid(values: dict[str, Any], name: str, lines: dict | None = None) -> GridSpec:
    try:
        return GridSpec.model_validate(values)
    except ValidationError as err:
        raise grid_error(err, name, lines or {}) from None


def parse_resources(values: Any, name: str, lines: dict | None = None) -> ResourcePlan:
    """A resources file for `compare --resources`: the `resources` block of a grid spec
    (either the block itself or a mapping holding it under `resources:`)."""
    if isinstance(values, dict) and set(values) == {"resources"}:
        values = values["resources"]
        lines = {key[1:]: line for key, line in (lines or {}).items() if key[:1] == ("resources",)}
    try:
        return ResourcePlan.model_validate(values)
    except ValidationError as err:
        raise grid_error(err, name, lines or {}, ("resources",), ResourcePlan) from None


def grid_error(
    err: ValidationError,
    name: str,
    lines: dict,
    prefix: tuple = (),
    root: type[BaseModel] = GridSpec,
) -> UserError:
    """The first validation error as one line: `file:line: key.path: what is wrong`."""
    errors = err.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    key_loc = tuple(part for part in loc if isinstance(part, str))
    path = ".".join(str(part) for part in (*prefix, *loc))
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(root, key_loc[:-1])
        hint = did_you_mean(str(loc[-1]), allowed)
        message = f"unknown key.{hint} Allowed: {', '.join(allowed)}."
    else:
        message = first["msg"].removeprefix("Value error, ")
        if "input" in first and not isinstance(first["input"], dict | list):
            message += f" (got {first['input']!r})"
    line = lines.get(loc) or lines.get(key_loc)
    where = f"{name}:{line}" if line else name
    more = len(errors) - 1
    tail = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return UserError(f"{where}: {path}: {message}{tail}")


def _allowed_keys(root: type[BaseModel], parent: tuple[str, ...]) -> list[str]:
    """The keys the section at `parent` takes."""
    model = root
    for part in parent:
        field = model.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return sorted(model.model_fields)
