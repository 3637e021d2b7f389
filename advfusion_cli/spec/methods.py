"""The `method` section: one model per method, a discriminated union on `name`.

LoRA, the task adapter and Compacter train one module per language; AdapterFusion and
AdvFusion train a fusion layer over frozen language adapters (arXiv 2005.00247, 2511.02869).
Defaults follow the authors' settings (reference sections 1-3), except AdvFusion's
`split_budget` (equal compute to AdapterFusion; the `paper` preset turns it off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from advfusion_cli.spec.base import StrictModel, key_error

Activation = Literal["relu", "gelu", "gelu_tanh", "silu", "tanh"]
AdapterKind = Literal["task-adapter", "compacter"]


@dataclass(frozen=True)
class Budget:
    """How long one training stage runs: a number of epochs or of optimizer steps."""

    epochs: float | None = None
    steps: int | None = None

    def __str__(self) -> str:
        if self.steps is not None:
            return f"{self.steps} steps"
        return f"{self.epochs:g} epochs"


class LoraMethod(StrictModel):
    """LoRA via peft: W x + (alpha / r) B A x on the target projections."""

    name: Literal["lora"] = Field("lora", description="Method name.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(16.0, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None,
        min_length=1,
        description="Module names to adapt; null = peft's default for the architecture "
        "(q_proj, v_proj for Llama/Qwen2).",
    )

    @property
    def adapter_kind(self) -> str:
        return "lora"


class TaskAdapterMethod(StrictModel):
    """Bottleneck adapter after each MLP: f + U act(D (f + h))."""

    name: Literal["task-adapter"] = Field("task-adapter", description="Method name.")
    reduction_factor: int = Field(16, ge=1, description="Bottleneck size = hidden / this.")
    activation: Activation = Field("relu", description="Bottleneck non-linearity.")

    @property
    def adapter_kind(self) -> str:
        return "task-adapter"


class CompacterMethod(StrictModel):
    """Compacter: PHM bottleneck adapters after attention and MLP (Houlsby placement)."""

    name: Literal["compacter"] = Field("compacter", description="Method name.")
    reduction_factor: int = Field(32, ge=1, description="Bottleneck size = hidden / this.")
    activation: Activation = Field("gelu", description="Bottleneck non-linearity (gelu = erf).")
    phm_dim: int = Field(4, ge=1, description="PHM n: W = sum of n Kronecker products.")
    phm_rank: int = Field(1, ge=1, description="Rank of each per-layer PHM factor B_i.")
    shared_phm_rule: bool = Field(
        True, description="Share the PHM rules A_i across all layers and places."
    )

    @property
    def adapter_kind(self) -> str:
        return "compacter"


_COMPACTER_ONLY = ("phm_dim", "phm_rank", "shared_phm_rule")


class FusedAdapterSettings(StrictModel):
    """Hyperparameters of the adapters a fusion combines; null = the kind's default."""

    reduction_factor: int | None = Field(
        None, ge=1, description="Bottleneck reduction; null = 16 (task-adapter) / 32 (compacter)."
    )
    activation: Activation | None = Field(
        None, description="Non-linearity; null = relu (task-adapter) / gelu (compacter)."
    )
    phm_dim: int | None = Field(None, ge=1, description="Compacter only: PHM n; null = 4.")
    phm_rank: int | None = Field(None, ge=1, description="Compacter only: PHM rank; null = 1.")
    shared_phm_rule: bool | None = Field(
        None, description="Compacter only: share PHM rules across layers; null = true."
    )


class FusionSettings(StrictModel):
    """Settings shared by AdapterFusion and AdvFusion."""

    name: str  # declared first so dumps start with it; each subclass narrows it to a Literal
    adapter_kind: AdapterKind = Field(
        "task-adapter", description="Kind of the language adapters that are fused."
    )
    adapter: FusedAdapterSettings = Field(
        default_factory=FusedAdapterSettings,
        description="Hyperparameters of the fused adapters (used when they are trained).",
    )
    temperature: bool = Field(
        False, description="Anneal the softmax temperature from 50 to 1 (adapters-lib schedule)."
    )
    regularization_weight: float = Field(
        0.01, ge=0, description="Weight of the value-matrix regularizer sum ||I - W_V||^2."
    )
    query_rank: int | None = Field(
        None, ge=1, description="Low-rank query/key projections (not the paper's); null = full."
    )

    @model_validator(mode="after")
    def _compacter_settings_need_compacter(self):
        if self.adapter_kind != "compacter":
            for key in _COMPACTER_ONLY:
                if getattr(self.adapter, key) is not None:
                    raise key_error(
                        f"adapter.{key}",
                        f"only applies when method.adapter_kind is 'compacter' "
                        f"(it is '{self.adapter_kind}')",
                    )
        return self

    def adapter_method(self) -> TaskAdapterMethod | CompacterMethod:
        """The fused adapters' full settings: the kind's defaults, then `adapter` overrides."""
        given = {k: v for k, v in self.adapter.model_dump().items() if v is not None}
        if self.adapter_kind == "compacter":
            return CompacterMethod(**given)
        return TaskAdapterMethod(**given)


class AdapterFusionMethod(FusionSettings):
    """AdapterFusion: attention over frozen language adapters, trained on target data."""

    name: Literal["adapterfusion"] = Field("adapterfusion", description="Method name.")


class AdvFusionMethod(FusionSettings):
    """AdvFusion: phase 1 with the target adapter masked, phase 2 with it restored."""

    name: Literal["advfusion"] = Field("advfusion", description="Method name.")
    mask_mode: Literal["zero", "remove"] = Field(
        "zero",
        description="Phase-1 masking: zero = target adapter zeroed, stays as a null slot "
        "(authors' code); remove = its slot gets a -inf logit.",
    )
    phase1_data: Literal["target", "all"] = Field(
        "target",
        description="Phase-1 training data: target = target language only (authors' code); "
        "all = every language mixed (original SANER paper).",
    )
    reset_optimizer_between_phases: bool = Field(
        False, description="Fresh optimizer state for phase 2 (authors keep it)."
    )
    split_budget: bool = Field(
        True,
        description="Split the training budget between the two phases (equal compute to "
        "AdapterFusion); false = each phase gets the whole budget (the paper: E epochs each).",
    )
    phase1_epochs: float | None = Field(
        None, gt=0, description="Phase-1 length in epochs; overrides the training budget."
    )
    phase1_steps: int | None = Field(
        None, gt=0, description="Phase-1 length in steps; overrides the training budget."
    )
    phase2_epochs: float | None = Field(
        None, gt=0, description="Phase-2 length in epochs; overrides the training budget."
    )
    phase2_steps: int | None = Field(
        None, gt=0, description="Phase-2 length in steps; overrides the training budget."
    )

    @model_validator(mode="after")
    def _one_length_per_phase(self):
        for phase in (1, 2):
            if (
                getattr(self, f"phase{phase}_epochs") is not None
                and getattr(self, f"phase{phase}_steps") is not None
            ):
                raise key_error(
                    f"phase{phase}_steps",
                    f"set phase{phase}_epochs or phase{phase}_steps, not both",
                )
        return self

    def _explicit_budget(self, phase: int) -> Budget | None:
        steps = getattr(self, f"phase{phase}_steps")
        epochs = getattr(self, f"phase{phase}_epochs")
        if steps is not None:
            return Budget(steps=steps)
        if epochs is not None:
            return Budget(epochs=epochs)
        return None

    def phase_budgets(self, budget: Budget) -> tuple[Budget, Budget]:
        """(phase 1, phase 2) lengths given the training budget of one stage."""
        if not self.split_budget:
            first = second = budget
        elif budget.steps is not None:
            half = max(budget.steps // 2, 1)
            first, second = Budget(steps=half), Budget(steps=max(budget.steps - half, 1))
        else:
            first = second = Budget(epochs=budget.epochs / 2)
        return (self._explicit_budget(1) or first, self._explicit_budget(2) or second)


MethodSpec = Annotated[
    LoraMethod | TaskAdapterMethod | CompacterMethod | AdapterFusionMethod | AdvFusionMethod,
    Field(discriminator="name"),
]

METHOD_MODELS: dict[str, type[StrictModel]] = {
    "lora": LoraMethod,
    "task-adapter": TaskAdapterMethod,
    "compacter": CompacterMethod,
    "adapterfusion": AdapterFusionMethod,
    "advfusion": AdvFusionMethod,
}
