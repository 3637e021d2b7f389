"""`data.custom`: a task of the user's own, defined by their records and a prompt template.

    data:
      task: custom
      source: records/            # train/validation/test files, or one file to split
      custom:
        template: "# {language}\\n# {docstring}\\n"
        target_field: code
        metrics: [bleu, rouge-l, exact-match]

The block may also be a path to a YAML file holding these keys (read relative to the current
folder, like data.source); the resolved spec then carries the block itself, so a run's
job.yaml records the task it was trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from advfusion_cli.data.splits import DEFAULT_FRACTIONS
from advfusion_cli.data.template import parse_template
from advfusion_cli.errors import UserError
from advfusion_cli.spec.base import StrictModel, key_error

MetricName = Literal["bleu", "rouge-l", "exact-match", "pass@k"]
# What each metric name reports (the names the evaluation writes into metrics.json).
METRIC_COLUMNS: dict[str, tuple[str, ...]] = {
    "bleu": ("bleu4_smooth_13a_corpus", "bleu4_smooth_13a_sentence_mean", "sacrebleu_corpus"),
    "rouge-l": ("rougeL_f",),
    "exact-match": ("exact_match",),
    "pass@k": ("pass@1", "pass@5", "pass@10"),
}
# The data.custom keys the loader reads (the rest drive evaluation and generation).
LOADER_KEYS = (
    "template",
    "target_field",
    "language_field",
    "id_field",
    "group_field",
    "tests_field",
    "cut_field",
    "split_fractions",
    "config",
)


class CustomTaskSpec(StrictModel):
    """A user-defined task: which fields make the prompt and the target, how it is scored."""

    template: str = Field(
        description="The prompt: text with {field} placeholders; '{{' and '}}' are braces.",
    )
    target_field: str = Field(min_length=1, description="The field the model learns to write.")
    language_field: str = Field(
        "language", min_length=1, description="The field naming each record's language."
    )
    id_field: str | None = Field(None, description="A unique id per record; null = file:line.")
    group_field: str | None = Field(
        None, description="One file only: records sharing it stay in one split; null = none."
    )
    split_fractions: list[float] = Field(
        default_factory=lambda: list(DEFAULT_FRACTIONS),
        description="One file only: train, validation, test fractions (seeded: data.split_seed).",
    )
    tests_field: str | None = Field(
        None, description="Stdin/stdout tests in xCodeEval's form, for pass@k; null = none."
    )
    # Left out of the dump when unset, so the ids of custom tasks made before it stay.
    config: str | None = Field(
        None,
        min_length=1,
        exclude_if=lambda value: value is None,
        description="Hub layout: the dataset config to read (README.md configs or a "
        "<config>/ folder); null = the default one.",
    )
    cut_field: str | None = Field(
        None, description="The template field cut when a prompt is too long; null = longest."
    )
    input_field: str | None = Field(
        None, description="`generate`: the template field its input fills; null = cut_field."
    )
    stop: list[str] = Field(
        default_factory=list, description="Generated text ends before the first of these."
    )
    metrics: list[MetricName] = Field(
        default_factory=lambda: ["bleu", "rouge-l", "exact-match"],
        min_length=1,
        description="What compare reports: bleu, rouge-l, exact-match, pass@k.",
    )

    @field_validator("template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            parse_template(value)
        except ValueError as err:
            raise key_error("", str(err)) from None
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: list[str]) -> list[str]:
        for index, stop in enumerate(value):
            if not stop:
                raise key_error(f"[{index}]", "an empty stop string would end every answer")
        return value

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: list[float]) -> list[float]:
        from advfusion_cli.data.splits import check_fractions

        try:
            check_fractions(value)
        except UserError as err:
            raise key_error("", str(err).replace("split_fractions ", "")) from None
        return value

    @model_validator(mode="after")
    def _fields_agree(self):
        fields = parse_template(self.template).fields
        for key in ("cut_field", "input_field"):
            name = getattr(self, key)
            if name is not None and name not in fields:
                raise key_error(
                    key, f"'{name}' is not a field of the template ({', '.join(fields)})"
                )
        if self.target_field in fields:
            raise key_error(
                "target_field",
                f"'{self.target_field}' is also in the template: the prompt would hold the answer",
            )
        if "pass@k" in self.metrics and not self.tests_field:
            raise key_error("metrics", "pass@k needs tests_field (the records' stdin/stdout tests)")
        if self.generation_field is None:
            raise key_error(
                "input_field",
                f"the template has several fields ({', '.join(fields)}); name the one "
                "`generate` fills",
            )
        return self

    @property
    def generation_field(self) -> str | None:
        """The template field `generate` fills with its input."""
        if self.input_field or self.cut_field:
            return self.input_field or self.cut_field
        fields = [f for f in parse_template(self.template).fields if f != self.language_field]
        return fields[0] if len(fields) == 1 else None

    def loader_options(self, seed: int) -> dict[str, Any]:
        """The keyword options of load_task('custom', ...)."""
        options = {key: getattr(self, key) for key in LOADER_KEYS}
        options["split_fractions"] = tuple(self.split_fractions)
        return {**options, "seed": seed}

    def table_metrics(self, n: int) -> list[str]:
        """compare's table columns: the chosen metrics, pass@k up to the candidates drawn."""
        names = []
        for metric in self.metrics:
            columns = METRIC_COLUMNS[metric]
            if metric == "pass@k":
                columns = tuple(c for c in columns if int(c.split("@")[1]) <= n)
            names += columns
        return names


def read_custom_block(value: Any) -> Any:
    """A path (str) to a YAML file of the block -> its mapping; anything else unchanged."""
    if not isinstance(value, str | Path):
        return value
    from advfusion_cli.spec.yaml_io import read_yaml_file

    path = Path(value).expanduser()
    if not path.is_file():
        raise key_error("", f"'{value}' is neither a task definition block nor a YAML file")
    try:
        values, _ = read_yaml_file(path)
    except UserError as err:
        raise key_error("", str(err)) from None
    return values
