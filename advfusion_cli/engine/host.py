"""AdapterHost: language adapters, AdapterFusion and AdvFusion masking on a loaded causal LM.

AdvFusion (arXiv 2511.02869): fuse N frozen language adapters with AdapterFusion, first with
the target language's adapter masked (a null slot), then with it restored. The host wraps every
decoder layer's attention and MLP output projections (see `places.AdapterPlace`), captures the
residual stream with pre-hooks on the norms, and switches between no adapter, one adapter and a
fusion. `detach()` puts the original projections back.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from advfusion_cli.engine import host_io
from advfusion_cli.engine.architectures import (
    PLACES,
    decoder_layers,
    layer_submodule,
    layout_for,
)
from advfusion_cli.engine.attention_record import FusionAttentionRecord
from advfusion_cli.engine.freezing import freeze_all, unfreeze
from advfusion_cli.engine.loading import DTYPES
from advfusion_cli.engine.modules import (
    Adapter,
    AdapterConfig,
    AdapterStack,
    FusionConfig,
    FusionLayer,
    new_phm_rule,
)
from advfusion_cli.engine.places import AdapterPlace, Routing, module_device
from advfusion_cli.engine.safetensors_stream import StreamedTensor
from advfusion_cli.errors import UserError, unknown_name_error

HOST_ATTRIBUTE = "_advfusion_host"
RULES_MODULE = "advfusion_phm_rules"  # shared Compacter rules, one per adapter, on the model
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass
class FusionState:
    """The current fusion: adapters in slot order, settings, masked adapters."""

    names: list[str]
    config: FusionConfig
    places: tuple[str, ...]
    masked: list[str] = field(default_factory=list)


def default_adapter_dtype(model: nn.Module) -> torch.dtype:
    """bf16 when the model sits on a GPU, else fp32, whatever the base weights' storage."""
    return torch.bfloat16 if module_device(model).type == "cuda" else torch.float32


def _resolve_adapter_dtype(model: nn.Module, dtype: torch.dtype | str | None) -> torch.dtype:
    if dtype is None:
        return default_adapter_dtype(model)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise UserError(f"Unknown adapter_dtype '{dtype}'. Available: {', '.join(DTYPES)}.")
    return DTYPES[dtype]


def attach_host(model: nn.Module, adapter_dtype: torch.dtype | str | None = None) -> AdapterHost:
    """The model's AdapterHost, created on first call (later calls return the same host)."""
    host = getattr(model, HOST_ATTRIBUTE, None)
    if host is not None:
        if (
            adapter_dtype is not None
            and _resolve_adapter_dtype(model, adapter_dtype) != host.adapter_dtype
        ):
            raise UserError(
                f"An AdapterHost with adapter_dtype {host.adapter_dtype} is already attached; "
                "detach it first to change the dtype."
            )
        return host
    return AdapterHost(model, adapter_dtype)


class AdapterHost:
    """Adapters and fusions living inside `model`; one host per model (use `attach_host`)."""

    def __init__(self, model: nn.Module, adapter_dtype: torch.dtype | str | None = None) -> None:
        if getattr(model, HOST_ATTRIBUTE, None) is not None:
            raise UserError("This model already has an AdapterHost; use attach_host(model).")
        if hasattr(model, "peft_config"):
            raise UserError("This model carries peft (LoRA) adapters; use a fresh base model.")
        self.model = model
        self.layout = layout_for(model)
        self.hidden_size = int(model.config.hidden_size)
        self.adapter_dtype = _resolve_adapter_dtype(model, adapter_dtype)
        self.routing = Routing()
        self.fusion_state: FusionState | None = None
        self.fusion_init_rng: Tensor | None = None  # torch.get_rng_state() when fuse began
        self._configs: dict[str, AdapterConfig] = {}
        self._languages: dict[str, str | None] = {}
        self._places: dict[tuple[int, str], AdapterPlace] = {}
        self._hooks: list = []
        self._base_requires_grad = {id(p): p.requires_grad for p in model.parameters()}
        self._rules = nn.ParameterDict()
        self._detached = False
        layers = decoder_layers(model, self.layout)
        self.num_layers = len(layers)
        for layer in layers:  # check every path before changing anything
            for place in PLACES:
                layer_submodule(layer, self.layout.output_path(place), self.layout)
                layer_submodule(layer, self.layout.residual_norm_path(place), self.layout)
        for index, layer in enumerate(layers):
            for place in PLACES:
                self._wrap(index, layer, place)
        model.add_module(RULES_MODULE, self._rules.train(model.training))
        setattr(model, HOST_ATTRIBUTE, self)

    # ---- wiring -------------------------------------------------------------------------
    def _wrap(self, index: int, layer: nn.Module, place: str) -> None:
        path = self.layout.output_path(place)
        base = layer_submodule(layer, path, self.layout)
        norm = layer_submodule(layer, self.layout.residual_norm_path(place), self.layout)
        wrapper = AdapterPlace(base, index, place, self.routing, self.adapter_dtype)
        wrapper.train(base.training)  # a new module starts in train mode; keep the model's
        parent_path, _, child = path.rpartition(".")
        parent = layer.get_submodule(parent_path) if parent_path else layer
        setattr(parent, child, wrapper)
        self._hooks.append(
            norm.register_forward_pre_hook(wrapper.capture_residual, with_kwargs=True)
        )
        self._places[(index, place)] = wrapper

    def detach(self) -> None:
        """Restore the original projections, hooks and requires_grad flags; drop all adapters."""
        self._check_attached()
        layers = decoder_layers(self.model, self.layout)
        for (index, place), wrapper in self._places.items():
            path = self.layout.output_path(place)
            parent_path, _, child = path.rpartition(".")
            parent = layers[index].get_submodule(parent_path) if parent_path else layers[index]
            setattr(parent, child, wrapper.base)
        for handle in self._hooks:
            handle.remove()
        delattr(self.model, RULES_MODULE)
        for parameter in self.model.parameters():
            if id(parameter) in self._base_requires_grad:
                parameter.requires_grad_(self._base_requires_grad[id(parameter)])
        delattr(self.model, HOST_ATTRIBUTE)
        self._places.clear()
        self._hooks.clear()
        self._detached = True

    def _check_attached(self) -> None:
        if self._detached:
            raise UserError("This AdapterHost was detached; attach a new one with attach_host.")

    def place(self, layer_index: int, place: str) -> AdapterPlace:
        return self._places[(layer_index, place)]

    # ---- adapters -----------------------------------------------------------------------
    @property
    def adapter_names(self) -> list[str]:
        return list(self._configs)

    def adapter_config(self, name: str) -> AdapterConfig:
        return self._configs[self._known(name)]

    def adapter_language(self, name: str) -> str | None:
        return self._languages[self._known(name)]

    def _known(self, name: str) -> str:
        if name not in self._configs:
            if not self._configs:
                raise UserError(f"Unknown adapter '{name}': no adapters have been added yet.")
            raise unknown_name_error("adapter", name, self._configs)
        return name

    def add_adapter(
        self, name: str, config: AdapterConfig | None = None, *, language: str | None = None
    ) -> None:
        """A new adapter `name` at every place of `config.places` (fresh init, trainable)."""
        self._check_attached()
        config = config or AdapterConfig.task_adapter()
        if not isinstance(config, AdapterConfig):
            raise UserError(f"add_adapter needs an AdapterConfig, got {type(config).__name__}.")
        if not isinstance(name, str) or not name or not set(name) <= _NAME_CHARS:
            raise UserError(
                f"Invalid adapter name {name!r}: use letters, digits, '_' or '-' (e.g. 'python')."
            )
        if name in self._configs:
            raise UserError(f"Adapter '{name}' already exists; remove_adapter('{name}') first.")
        first = self._places[(0, config.places[0])]
        rule = None
        if config.kind == "compacter" and config.shared_phm_rule:
            fresh = new_phm_rule(config)
            rule = nn.Parameter(fresh.detach().to(device=first.device, dtype=self.adapter_dtype))
            self._rules[name] = rule
        for index in range(self.num_layers):
            for place in config.places:
                wrapper = self._places[(index, place)]
                adapter = Adapter(self.hidden_size, config, phm_rule=rule)
                adapter.train(wrapper.training)  # follow the model's train/eval mode
                wrapper.adapters[name] = adapter.to(device=wrapper.device, dtype=self.adapter_dtype)
        self._configs[name] = config
        self._languages[name] = language

    def remove_adapter(self, name: str) -> None:
        self._check_attached()
        self._known(name)
        if self.fusion_state is not None and name in self.fusion_state.names:
            raise UserError(
                f"Adapter '{name}' is part of the current fusion; it cannot be removed."
            )
        for wrapper in self._places.values():
            if name in wrapper.adapters:
                del wrapper.adapters[name]
        if name in self._rules:
            del self._rules[name]
        del self._configs[name], self._languages[name]
        if self.routing.active == name:
            self.activate(None)

    def adapters_of(self, name: str) -> Iterator[tuple[int, str, Adapter]]:
        """(layer index, place, adapter module) for every place of adapter `name`."""
        config = self._configs[self._known(name)]
        for index in range(self.num_layers):
            for place in config.places:
                yield index, place, self._places[(index, place)].adapters[name]

    def shared_rule(self, name: str) -> nn.Parameter | None:
        return self._rules.get(name, None)

    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        params: list[nn.Parameter] = []
        rule = self.shared_rule(self._known(name))
        if rule is not None:
            params.append(rule)
        for _, _, adapter in self.adapters_of(name):
            params.extend(adapter.parameters())
        return params

    # ---- routing ------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        """ "none", "adapter" or "fusion"."""
        return self.routing.mode

    @property
    def active(self) -> str | None:
        return self.routing.active

    def activate(self, name: str | None) -> None:
        """Route through adapter `name` alone, or through nothing (None) - the base model."""
        self._check_attached()
        if name is None:
            self.routing.mode, self.routing.active = "none", None
            return
        config = self._configs[self._known(name)]
        self.routing.mode, self.routing.active = "adapter", name
        self.routing.reads_residual = config.input_includes_residual
        self.routing.removed = None

    def fuse(
        self, names: list[str], config: FusionConfig | None = None, *, on_meta: bool = False
    ) -> None:
        """Fresh fusion layers over adapters `names` (slot order = list order); fusion mode on.

        on_meta: build the layers on the meta device (no memory, no random draws) for a
        sharded run, which materialises each process's slice from `initial_fusion_layers`.
        """
        self._check_attached()
        config = config or FusionConfig()
        if not isinstance(config, FusionConfig):
            raise UserError(f"fuse needs a FusionConfig, got {type(config).__name__}.")
        names = list(names)
        if not names:
            raise UserError("fuse needs at least one adapter name.")
        if len(set(names)) != len(names):
            raise UserError(f"Adapter names repeat in the fusion list: {', '.join(names)}.")
        configs = [self._configs[self._known(n)] for n in names]
        first = configs[0]
        for name, other in zip(names[1:], configs[1:], strict=True):
            if (other.kind, other.activation) != (first.kind, first.activation):
                raise UserError(
                    f"Cannot fuse '{names[0]}' ({first.kind}, {first.activation}) with '{name}' "
                    f"({other.kind}, {other.activation}): fused adapters share kind and activation."
                )
        for wrapper in self._places.values():
            wrapper.fusion, wrapper.stack = None, None
        # The random state the layers' initialisation starts from (replayed for meta layers).
        self.fusion_init_rng = torch.get_rng_state()
        for index in range(self.num_layers):
            for place in first.places:
                wrapper = self._places[(index, place)]
                if on_meta:
                    with torch.device("meta"):
                        fusion = FusionLayer(self.hidden_size, len(names), config)
                    fusion.train(wrapper.training)
                    wrapper.fusion = fusion.to(dtype=self.adapter_dtype)
                else:
                    wrapper.fusion = self._new_fusion_layer(len(names), config, wrapper)
                    wrapper.fusion.to(device=wrapper.device)
        self.fusion_state = FusionState(names=names, config=config, places=first.places)
        self.activate_fusion()

    def _new_fusion_layer(
        self, n_adapters: int, config: FusionConfig, wrapper: AdapterPlace
    ) -> FusionLayer:
        """One freshly initialised layer on the CPU, in the adapter dtype (draws from the
        global RNG: W_Q, W_K ~ N(0, 0.02), W_V identity)."""
        fusion = FusionLayer(self.hidden_size, n_adapters, config)
        fusion.train(wrapper.training)  # eval mode must not step the temperature
        return fusion.to(dtype=self.adapter_dtype)

    def initial_fusion_layers(self) -> Iterator[tuple[FusionLayer, FusionLayer]]:
        """(the live layer, a CPU copy with the values `fuse` would have drawn), place by
        place in `fuse`'s order, replayed from the random state `fuse` started from: the
        values one process gets, whatever builds the live layers. One copy at a time: drop
        it before asking for the next. The global RNG ends where a real `fuse` leaves it."""
        state = self._require_fusion()
        torch.set_rng_state(self.fusion_init_rng)
        for index in range(self.num_layers):
            for place in state.places:
                wrapper = self._places[(index, place)]
                yield (
                    wrapper.fusion,
                    self._new_fusion_layer(len(state.names), state.config, wrapper),
                )

    def activate_fusion(self) -> None:
        """Route through the existing fusion again, with stacks refreshed from the adapters."""
        self._check_attached()
        state = self._require_fusion()
        self.refresh_fusion_stacks()
        self.routing.mode, self.routing.active = "fusion", None
        self.routing.reads_residual = self._configs[state.names[0]].input_includes_residual
        self._apply_removed()

    def refresh_fusion_stacks(self) -> None:
        """Copy the fused adapters' current weights into the stacks (masks re-applied)."""
        state = self._require_fusion()
        for wrapper in self._fused_places():
            stack = AdapterStack.from_adapters([wrapper.adapters[n] for n in state.names])
            wrapper.stack = stack.train(wrapper.training)
        if state.config.mask_mode == "zero":
            for name in state.masked:
                self._set_gate(name, 0.0)

    def _require_fusion(self) -> FusionState:
        if self.fusion_state is None:
            raise UserError("No fusion yet: call host.fuse([...adapter names]) first.")
        return self.fusion_state

    def _fused_places(self) -> list[AdapterPlace]:
        return [w for w in self._places.values() if w.fusion is not None]

    @property
    def fused_names(self) -> list[str]:
        return list(self.fusion_state.names) if self.fusion_state else []

    @property
    def masked(self) -> list[str]:
        return list(self.fusion_state.masked) if self.fusion_state else []

    def _slot(self, name: str) -> int:
        state = self._require_fusion()
        if name not in state.names:
            raise unknown_name_error("fused adapter", name, state.names)
        return state.names.index(name)

    def _set_gate(self, name: str, value: float) -> None:
        slot = self._slot(name)
        for wrapper in self._fused_places():
            wrapper.stack.set_gate(slot, value)

    def _apply_removed(self) -> None:
        state = self.fusion_state
        if state is None or state.config.mask_mode != "remove" or not state.masked:
            self.routing.removed = None
            return
        removed = torch.zeros(len(state.names), dtype=torch.bool)  # CPU: no device sync
        removed[[state.names.index(n) for n in state.masked]] = True
        self.routing.removed = removed

    def mask(self, name: str) -> None:
        """AdvFusion's null slot: adapter `name` contributes nothing (zero) or leaves the softmax."""
        self._check_attached()
        state = self._require_fusion()
        self._slot(name)
        if name in state.masked:
            return
        if state.config.mask_mode == "remove" and len(state.masked) + 1 == len(state.names):
            raise UserError("Cannot remove every adapter from the fusion softmax; one must stay.")
        state.masked.append(name)
        if state.config.mask_mode == "zero":
            self._set_gate(name, 0.0)
        self._apply_removed()

    def unmask(self, name: str) -> None:
        """Restore adapter `name`'s trained weights in the fusion."""
        self._check_attached()
        state = self._require_fusion()
        self._slot(name)
        if name not in state.masked:
            return
        state.masked.remove(name)
        if state.config.mask_mode == "zero":
            self._set_gate(name, 1.0)
        self._apply_removed()

    # ---- training helpers ---------------------------------------------------------------
    def freeze_for_adapter_training(
        self, name: str, *, train_input_embeddings: bool = False
    ) -> list[nn.Parameter]:
        """Activate adapter `name` and make its parameters the only trainable ones.

        `train_input_embeddings=True` reproduces the authors' runs, which also trained the
        input embeddings (and did not save them with the adapter); off by default.
        """
        self._check_attached()
        self.activate(name)
        freeze_all(self.model)
        params = self.adapter_parameters(name)
        if train_input_embeddings:
            params += list(self.model.get_input_embeddings().parameters())
        return unfreeze(params)

    def fusion_parameters(self) -> list[nn.Parameter]:
        self._require_fusion()
        return [p for wrapper in self._fused_places() for p in wrapper.fusion.parameters()]

    def freeze_for_fusion_training(self) -> list[nn.Parameter]:
        """Route through the fusion and make its layers the only trainable parameters."""
        self._check_attached()
        self.activate_fusion()
        freeze_all(self.model)
        return unfreeze(self.fusion_parameters())

    def fusion_regularization(self) -> Tensor:
        """weight * sum over fusion places of ||I - W_V||_F^2, to add to the loss."""
        state = self._require_fusion()
        terms = [wrapper.fusion.regularization() for wrapper in self._fused_places()]
        device = terms[0].device
        return state.config.regularization_weight * torch.stack([t.to(device) for t in terms]).sum()

    @contextmanager
    def record_fusion_attention(
        self, token_mask: Tensor | None = None
    ) -> Iterator[FusionAttentionRecord]:
        """Collect mean fusion attention per (layer, place, adapter) inside the block."""
        self._check_attached()
        state = self._require_fusion()
        if self.mode != "fusion":
            raise UserError(
                f"Fusion attention needs fusion mode (now '{self.mode}'); call activate_fusion()."
            )
        if self.routing.recorder is not None:
            raise UserError("Fusion attention is already being recorded.")
        record = FusionAttentionRecord(state.names, list(state.places), self.num_layers, token_mask)
        self.routing.recorder = record
        try:
            yield record
        finally:
            self.routing.recorder = None

    # ---- files --------------------------------------------------------------------------
    def save_adapter(
        self, name: str, folder: str | os.PathLike, *, language: str | None = None
    ) -> Path:
        """Write adapter `name` to `folder` (adapter.safetensors + adapter_config.json)."""
        self._check_attached()
        self._known(name)
        if language is not None:
            self._languages[name] = language
        return host_io.save_adapter(self, name, Path(folder))

    def load_adapter(
        self, folder: str | os.PathLike, name: str | None = None, *, strict_base: bool = True
    ) -> str:
        """Add the adapter saved in `folder` (under `name`, default its saved name)."""
        self._check_attached()
        loaded = host_io.load_adapter(self, Path(folder), name, strict_base)
        if self.fusion_state is not None and loaded in self.fusion_state.names:
            self.refresh_fusion_stacks()
        return loaded

    def save_fusion(
        self,
        folder: str | os.PathLike | None,
        streamed: list[StreamedTensor] | None = None,
        write: bool = True,
    ) -> Path | None:
        """Write the fusion layers to `folder` (fusion.safetensors + fusion_config.json).
        `streamed`: the weights as entries produced one at a time (a sharded run gathers
        each), under the names `host_io.fusion_tensors` gives; default the live layers'.
        write=False: produce the entries (join the gathers) and write nothing."""
        self._check_attached()
        self._require_fusion()
        return host_io.save_fusion(self, None if folder is None else Path(folder), streamed, write)

    def load_fusion(self, folder: str | os.PathLike, *, strict_base: bool = True) -> None:
        """Rebuild and load a saved fusion; its adapters must already be loaded."""
        self._check_attached()
        host_io.load_fusion(self, Path(folder), strict_base)
