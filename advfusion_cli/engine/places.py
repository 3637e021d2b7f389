"""One adapter place: a sublayer's output projection wrapped so adapters or a fusion follow it.

With `f` the projection's output and `h` the residual stream entering the sublayer (captured by a
pre-hook on the sublayer's norm), the place returns
  no adapter:      f
  one adapter:     f + delta(f + h)   (task adapter, Pfeiffer)   or   f + delta(f)   (Compacter)
  a fusion:        f + W_V sum_n alpha_n z_n,  z_n = delta_n(x), x = f + h or f
and the decoder layer then adds `h` as usual. The original projection (nn.Linear or a
bitsandbytes 4/8-bit layer) runs unchanged inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

from advfusion_cli.engine.modules import AdapterStack, FusionLayer

if TYPE_CHECKING:
    from advfusion_cli.engine.attention_record import FusionAttentionRecord

Mode = Literal["none", "adapter", "fusion"]


@dataclass
class Routing:
    """What every place does on the next forward; one instance shared by all places of a host."""

    mode: Mode = "none"
    active: str | None = None  # the adapter in "adapter" mode
    reads_residual: bool = False  # adapter/fusion input is f + h (task adapter) rather than f
    removed: Tensor | None = None  # (N,) bool on CPU: slots out of the fusion softmax, or None
    recorder: FusionAttentionRecord | None = None


def module_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


class AdapterPlace(nn.Module):
    """Wraps `base` (the projection) and routes its output through adapters or a fusion."""

    def __init__(
        self,
        base: nn.Module,
        layer_index: int,
        place: str,
        routing: Routing,
        adapter_dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.base = base
        self.adapters = nn.ModuleDict()
        self.stack: AdapterStack | None = None
        self.fusion: FusionLayer | None = None
        self.layer_index = layer_index
        self.place = place
        self.routing = routing
        self.adapter_dtype = adapter_dtype
        self.residual: Tensor | None = None

    @property
    def device(self) -> torch.device:
        return module_device(self.base)

    def capture_residual(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook on the sublayer's norm: its input is the residual stream h."""
        self.residual = args[0] if args else next(iter(kwargs.values()))

    def _adapter_input(self, f: Tensor, h: Tensor | None) -> Tensor:
        if not self.routing.reads_residual:
            return f
        if h is None:
            raise RuntimeError(
                f"Layer {self.layer_index} {self.place}: the residual stream was not captured "
                "before the output projection ran; the architecture layout's norm path is wrong."
            )
        return f + h.to(f.dtype)

    def forward(self, hidden: Tensor) -> Tensor:
        f = self.base(hidden)  # (B, T, d) sublayer output before the residual add
        h, self.residual = self.residual, None  # consume: never keep activations alive
        routing = self.routing
        if routing.mode == "adapter":
            if routing.active not in self.adapters:  # (nn.ModuleDict has no .get)
                return f
            adapter = self.adapters[routing.active]
            f_a = f.to(self.adapter_dtype)
            out = f_a + adapter(self._adapter_input(f_a, h))
            return out.to(f.dtype)
        if routing.mode == "fusion" and self.fusion is not None:
            f_a = f.to(self.adapter_dtype)
            x = self._adapter_input(f_a, h)  # query and adapter input coincide (reference §2)
            out, alpha = self.fusion.forward_from_stack(x, x, self.stack, f_a, routing.removed)
            if routing.recorder is not None:
                routing.recorder.add(self.layer_index, self.place, alpha)  # alpha (B, T, N)
            return out.to(f.dtype)
        return f

    def extra_repr(self) -> str:
        return f"layer={self.layer_index}, place={self.place}, adapter_dtype={self.adapter_dtype}"
