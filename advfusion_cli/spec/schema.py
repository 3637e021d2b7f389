"""The job spec: one pydantic tree (model, data, method, training, output) read from YAML.

Defaults are the embedded default's settings (the shipped tiny model on the testbed data);
the `paper` preset holds the authors' settings (reference section 4). Every key has a
description: they feed `--help`, `docs/specs.md` and the error messages.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from advfusion_cli.errors import UserError
from advfusion_cli.spec import names
from advfusion_cli.spec.base import StrictModel, key_error
from advfusion_cli.spec.custom_task import CustomTaskSpec, read_custom_block
from advfusion_cli.spec.methods import (
    AdapterFusionMethod,
    AdvFusionMethod,
    Budget,
    MethodSpec,
)
from advfusion_cli.spec.presets import canonical_preset


def _named(canonical):
    """A before-validator mapping user spellings to a registry's canonical id."""

    def check(value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the declared type reports the wrong type
        try:
            return canonical(value)
        except UserError as err:
            raise key_error("", names.lowercase_first(err)) from None

    return BeforeValidator(check)


TaskName = Annotated[
    Literal["commit-message", "code-generation", "code-translation", "custom"],
    _named(names.canonical_task),
]
LanguageId = Annotated[str, _named(names.canonical_language)]
SubsetName = Annotated[
    Literal["MultilingualTrans", "NicheTrans", "LLMTrans"], _named(names.canonical_subset)
]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]

# Hugging Face repo ids: "name" or "owner/name" of letters, digits, '.', '_' and '-'.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
RUN_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")
# Validation context key: False skips "a fusion needs a language besides the target" (for
# records of runs already made, and for a fusion spec read only for its adapters' settings).
CHECK_FUSION_INPUTS = "check_fusion_inputs"
# Seeds feed numpy's RandomState, which takes 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def normalize_source(value: str) -> str:
    """A data source's canonical form: 'testbed', 'hub:<id>' or a path; ValueError (the
    message names the problem) for a bare 'hub:', a malformed hub id or an empty value."""
    value = value.strip()
    if value.lower() == "testbed":
        return "testbed"
    if value.startswith("hub:"):
        hub_id = value[len("hub:") :].strip()
        if not hub_id:
            raise ValueError("'hub:' needs a dataset id, e.g. hub:bigcode/commitpackft")
        if not HUB_ID.match(hub_id):
            raise ValueError(f"'{hub_id}' is not a valid hub dataset id (owner/name)")
        return f"hub:{hub_id}"
    if not value:
        raise ValueError("must not be empty")
    return value


class ModelSpec(StrictModel):
    """The base model and how it is loaded."""

    name_or_path: str = Field(
        names.EMBEDDED_MODEL,
        min_length=1,
        description=f"'{names.EMBEDDED_MODEL}' (the shipped tiny model), a hub id or a local path.",
    )
    revision: str | None = Field(
        None, min_length=1, description="Hub model only: branch, tag or commit to load."
    )
    quantization: Literal["none", "8bit", "4bit"] = Field(
        "none", description="Load the base in 4-bit NF4 or 8-bit (bitsandbytes), or not."
    )
    dtype: Dtype = Field(
        "auto", description="Dtype of the base weights; auto = bfloat16 on CUDA, float32 on CPU."
    )
    double_quant: bool = Field(
        False, description="4-bit only: also quantize the quantization constants."
    )
    compute_dtype: Dtype = Field(
        "auto", description="Quantized only: dtype of the matmuls; auto = dtype's choice."
    )
    device_map: str | None = Field(
        None, description="Passed to from_pretrained (e.g. 'auto'); null = one device."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass to save memory."
    )
    adapter_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Dtype of the trained modules; auto = float32."
    )


class DataSpec(StrictModel):
    """Which task, where its data comes from, which languages, and how it is cut."""

    task: TaskName = Field("code-translation", description="The task to train and evaluate.")
    source: str = Field(
        "testbed",
        min_length=1,
        description="'testbed' (generated offline), 'hub:<dataset id>' or a local folder/file.",
    )
    revision: str | None = Field(
        None, min_length=1, description="Hub dataset only: branch, tag or commit to read."
    )
    languages: list[LanguageId] = Field(
        default_factory=lambda: list(names.TESTBED_LANGUAGES),
        min_length=1,
        description="Languages with an adapter each (the fusion's inputs); aliases accepted.",
    )
    target: LanguageId = Field(
        names.TESTBED_TARGET,
        description="The language whose data trains the fusion and which is evaluated.",
    )
    subset: SubsetName = Field(
        "MultilingualTrans", description="code-translation only: the CodeTransOcean subset."
    )
    max_prompt_tokens: int = Field(384, ge=1, description="Prompts are cut to this many tokens.")
    max_target_tokens: int = Field(256, ge=1, description="Targets are cut to this many tokens.")
    max_total_tokens: int = Field(512, ge=2, description="Longest training sequence.")
    loss_on: Literal["all", "target"] = Field(
        "all", description="Training loss over prompt and target (authors), or target only."
    )
    max_train_records: int | None = Field(
        None, ge=1, description="Use at most this many training records per language."
    )
    max_eval_records: int | None = Field(
        None, ge=1, description="Use at most this many evaluation records per language."
    )
    split_seed: int = Field(
        0, ge=0, le=MAX_SEED, description="Seed of splits the loader makes itself."
    )
    exec_outcome_filter: bool = Field(
        False, description="code-generation only: keep only solutions whose outcome is PASSED."
    )
    custom: Annotated[CustomTaskSpec | None, BeforeValidator(read_custom_block)] = Field(
        None,
        description="task custom only: template, target field, metrics (or a YAML file of them).",
    )

    @model_validator(mode="before")
    @classmethod
    def _custom_implies_task(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("custom") is not None and "task" not in data:
            data = {**data, "task": "custom"}
        return data

    @model_validator(mode="after")
    def _custom_block_matches_task(self):
        if self.task == "custom" and self.custom is None:
            raise key_error("custom", "data.task is custom: define the task in data.custom")
        if self.task != "custom" and self.custom is not None:
            raise key_error("task", f"data.custom defines a task, but data.task is {self.task}")
        if self.task == "custom" and self.source_kind == "testbed":
            raise key_error("source", "the custom task reads your records: a file or folder")
        return self

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        try:
            return normalize_source(value)
        except ValueError as err:
            raise key_error("", str(err)) from None

    @model_validator(mode="after")
    def _revision_needs_hub(self):
        if self.revision is not None and self.source_kind != "hub":
            raise key_error("revision", f"applies to hub: sources only (source is '{self.source}')")
        return self

    @field_validator("languages")
    @classmethod
    def _no_duplicates(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for index, language in enumerate(value):
            if language in seen:
                raise key_error(f"[{index}]", f"'{language}' is listed twice")
            seen.add(language)
        return value

    @property
    def source_kind(self) -> Literal["testbed", "hub", "path"]:
        if self.source == "testbed":
            return "testbed"
        return "hub" if self.source.startswith("hub:") else "path"

    @property
    def hub_id(self) -> str | None:
        return self.source[len("hub:") :] if self.source_kind == "hub" else None

    @property
    def task_label(self) -> str:
        """The task in folder names: a custom task adds a hash of its definition, so two
        custom tasks in one workdir never share stored adapters."""
        if self.custom is None:
            return self.task
        from advfusion_cli.workflows.runs import identity_hash

        return f"custom-{identity_hash(self.custom.model_dump(mode='json'))}"


TrackerName = Literal["tensorboard", "wandb", "mlflow"]


def _tracker_list(value: Any) -> Any:
    """`report_to: tensorboard`, `tensorboard,wandb` or `none` -> a list of tracker names."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and [v.lower() if isinstance(v, str) else v for v in value] == [
        "none"
    ]:
        return []
    if isinstance(value, list):
        return [v.strip().lower() if isinstance(v, str) else v for v in value]
    return value


class TrainingSpec(StrictModel):
    """Optimisation settings; the budget applies to every training stage (each adapter,
    the fusion; AdvFusion phases per `method.split_budget`)."""

    lr: float = Field(5e-3, gt=0, description="Peak learning rate of adapters and LoRA.")
    fusion_lr: float | None = Field(
        1e-3, gt=0, description="Peak learning rate of fusion layers; null = lr."
    )
    scheduler: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="LR decay after warmup."
    )
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    epochs: float | None = Field(
        None, gt=0, description="Stage length in epochs (or set max_steps)."
    )
    max_steps: int | None = Field(
        150, gt=0, description="Stage length in optimizer steps (or set epochs)."
    )
    batch_size: int = Field(8, ge=1, description="Sequences per forward pass.")
    grad_accum: int = Field(1, ge=1, description="Forward passes per optimizer step.")
    eval_every_steps: int | None = Field(
        50, gt=0, description="Evaluate every N steps (or set eval_every_epochs)."
    )
    eval_every_epochs: float | None = Field(
        None, gt=0, description="Evaluate every fraction of an epoch, e.g. 0.2."
    )
    save_every_steps: int | None = Field(
        50, gt=0, description="Checkpoint every N steps (or set save_every_epochs)."
    )
    save_every_epochs: float | None = Field(
        None, gt=0, description="Checkpoint every fraction of an epoch, e.g. 0.2."
    )
    keep_best: bool = Field(
        True, description="Reload the checkpoint with the lowest eval loss at stage end."
    )
    keep_checkpoints: int = Field(
        1, ge=1, description="Step checkpoints kept per phase while it trains (the newest)."
    )
    keep_optimizer_state: bool = Field(
        False,
        description="Keep the optimizer state in each phase's end checkpoint once the run "
        "finishes; false = delete it then (weights, schedule and position stay).",
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="Seed of initialisation, shuffling and dropout."
    )
    optimizer: Literal["auto", "adamw", "paged_adamw_32bit"] = Field(
        "auto",
        description="auto = paged_adamw_32bit on CUDA, AdamW on CPU and under FSDP (fused on "
        "CUDA); paged_adamw_32bit cannot run under FSDP.",
    )
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="Autocast; auto = bf16 on CUDA with bf16 support, else fp32."
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the gradient norm to this; null = no clipping."
    )
    distributed: Literal["auto", "ddp", "fsdp"] = Field(
        "auto",
        description="Several processes: ddp = whole fusion on each; fsdp = fusion sharded "
        "(FSDP2); auto = fsdp if the accelerate config asks for FSDP, else ddp.",
    )
    early_stopping_patience: int | None = Field(
        None,
        ge=1,
        description="End a phase after this many evaluations without eval-loss improvement; "
        "null = off.",
    )
    early_stopping_min_delta: float = Field(
        0.0, ge=0, description="Early stopping: an eval-loss drop must exceed this to count."
    )
    report_to: Annotated[list[TrackerName], BeforeValidator(_tracker_list)] = Field(
        default_factory=list,
        description="Experiment trackers: tensorboard, wandb, mlflow; [] or none = none.",
    )

    stop_signals: list[str] = Field(
        default_factory=lambda: ["SIGTERM", "SIGUSR1"],
        description="Signals that stop a run cleanly for a requeue: finish the step, "
        "checkpoint, mark it interrupted, exit 75.",
    )
    timeout_minutes: float | None = Field(
        None,
        gt=0,
        description="Collective timeout of the process group (several processes); "
        "null = torch's default (10 min under NCCL).",
    )

    @field_validator("report_to")
    @classmethod
    def _trackers_once(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("stop_signals", mode="before")
    @classmethod
    def _signal_names(cls, value: Any) -> Any:
        from advfusion_cli.spec.signals import signal_number

        if isinstance(value, str):  # --set training.stop_signals=SIGTERM,SIGUSR2
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            names = []
            for name in value:
                if not isinstance(name, str):
                    raise ValueError(f"{name!r} is not a signal name")
                names.append(signal_number(name).name)  # ValueError names a bad one
            return list(dict.fromkeys(names))
        return value

    @model_validator(mode="after")
    def _one_of_each_pair(self):
        if self.epochs is None and self.max_steps is None:
            raise key_error("max_steps", "set training.max_steps or training.epochs")
        periodic = self.eval_every_steps is not None or self.eval_every_epochs is not None
        if self.early_stopping_patience is not None and not periodic:
            raise key_error(
                "early_stopping_patience",
                "early stopping needs periodic evaluation: set training.eval_every_steps "
                "or training.eval_every_epochs",
            )
        for first, second in EXCLUSIVE_TRAINING_KEYS:
            if getattr(self, first) is not None and getattr(self, second) is not None:
                raise key_error(second, f"set training.{first} or training.{second}, not both")
        if self.optimizer == "paged_adamw_32bit" and self.distributed == "fsdp":
            raise key_error(
                "optimizer",
                "paged_adamw_32bit (bitsandbytes) cannot step FSDP's sharded fusion: set "
                "training.optimizer=adamw (or auto) with training.distributed=fsdp",
            )
        return self

    @property
    def budget(self) -> Budget:
        if self.max_steps is not None:
            return Budget(steps=self.max_steps)
        return Budget(epochs=self.epochs)

    def lr_for(self, stage: Literal["adapter", "fusion"]) -> float:
        if stage == "fusion" and self.fusion_lr is not None:
            return self.fusion_lr
        return self.lr


# Pairs where setting one key at a higher precedence level clears the other.
EXCLUSIVE_TRAINING_KEYS: tuple[tuple[str, str], ...] = (
    ("epochs", "max_steps"),
    ("eval_every_epochs", "eval_every_steps"),
    ("save_every_epochs", "save_every_steps"),
)


class OutputSpec(StrictModel):
    """Where runs and adapters are written."""

    workdir: Path = Field(
        Path("advfusion-runs"), description="Folder of adapters and runs (created if missing)."
    )
    run_name: str | None = Field(
        None, description="Name of the run folder; null = derived from task, method and target."
    )
    data_cache: Path | None = Field(
        None, description="Folder of prepared (tokenized) data; null = <workdir>/data-cache."
    )
    use_data_cache: bool = Field(
        True, description="Read and write the prepared-data cache (false = --no-cache)."
    )

    @field_validator("run_name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not RUN_NAME.match(value):
            raise key_error(
                "",
                f"'{value}' must start with a letter or digit and use only letters, digits, . _ -",
            )
        return value


class JobSpec(StrictModel):
    """A whole job: what to load, which data, which method, how to train, where to write."""

    preset: str = Field(
        "testbed", description="Named settings under the spec file: testbed or paper."
    )
    model: ModelSpec = Field(default_factory=ModelSpec, description="The base model.")
    data: DataSpec = Field(default_factory=DataSpec, description="Task and data.")
    method: MethodSpec = Field(
        default_factory=AdvFusionMethod, description="The adaptation method and its settings."
    )
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation.")
    output: OutputSpec = Field(default_factory=OutputSpec, description="Output locations.")

    @model_validator(mode="before")
    @classmethod
    def _canonical_method(cls, data: Any) -> Any:
        if isinstance(data, dict) and "method" in data:
            data = {**data, "method": normalize_method_block(data["method"])}
        return data

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str) -> str:
        try:
            return canonical_preset(value)
        except UserError as err:
            raise key_error("", names.lowercase_first(err)) from None

    @model_validator(mode="after")
    def _target_among_fused(self, info: ValidationInfo):
        if self.is_fusion and self.data.target not in self.data.languages:
            raise key_error(
                "data.target",
                f"'{self.data.target}' is not among data.languages "
                f"({', '.join(self.data.languages)}); a fusion needs the target's adapter",
            )
        check_inputs = (info.context or {}).get(CHECK_FUSION_INPUTS, True)
        if check_inputs and self.is_fusion and not set(self.data.languages) - {self.data.target}:
            raise key_error(
                "data.languages",
                f"a fusion needs a language besides the target '{self.data.target}' "
                f"(got only {', '.join(self.data.languages)}); list more languages "
                "(data.languages / --langs)",
            )
        return self

    @property
    def is_fusion(self) -> bool:
        return isinstance(self.method, AdapterFusionMethod | AdvFusionMethod)

    def phase_budgets(self) -> tuple[Budget, ...]:
        """Length of each fusion/adapter training phase: two for AdvFusion, else one."""
        if isinstance(self.method, AdvFusionMethod):
            return self.method.phase_budgets(self.training.budget)
        return (self.training.budget,)


def normalize_method_block(block: Any) -> Any:
    """`advfusion-compacter` -> name advfusion + adapter_kind compacter; `method: lora` -> a
    mapping. Unknown names raise a key error at method.name with did-you-mean."""
    if isinstance(block, str):
        block = {"name": block}
    if not isinstance(block, dict) or not isinstance(block.get("name"), str):
        return block
    try:
        name, implied = names.canonical_method(block["name"])
    except UserError as err:
        raise key_error("method.name", names.lowercase_first(err)) from None
    for key, value in implied.items():
        given = block.get(key)
        if given is not None and given != value:
            raise key_error(
                f"method.{key}",
                f"'{given}' contradicts method name '{block['name']}' (which implies '{value}')",
            )
    return {**block, "name": name, **implied}
