"""Where the trainable state lives across processes: whole on every process (one process, DDP),
or split between them (FSDP2, torch's `fully_shard`) for the fusion layers.

Under FSDP each fusion layer (W_Q, b_Q, W_K, b_K, W_V) is one sharding unit: its parameters,
their gradients and the AdamW moments are DTensors split along dim 0, so each of N processes
holds about 1/N of them. The frozen base (4-bit or not) and the frozen adapter stacks are left
exactly as loaded, whole on every process: the root module is wrapped with every one of its
own parameters ignored, only so that it drives the fusion layers' all-gathers and
reduce-scatters. Gradients are averaged over processes by the reduce-scatter, as DDP does.

Checkpoints hold whole tensors, whatever the number of processes that wrote them: the
main process streams each file (`StreamedTensor` entries, written by the engine's
safetensors stream), gathering one tensor (a collective every process joins), writing it and
dropping it before the next; a restore reads only each process's rows. Under FSDP the Adam
moments go to their own safetensors file (`optimizer_parts`); the rest of the optimizer
state stays in `state.pt`.

Memory: a run built for FSDP creates its fusion layers on the meta device and materialises
each process's slice from the values one process would draw (`initialise_local_shards`, one
unit at a time); evaluation runs ordinary sharded forwards (each unit gathered for its own
forward, every process running as many batches); checkpoints and exports gather one tensor
at a time onto the main process's CPU and write it before gathering the next. So no process holds more than one whole unit outside
a backward pass (FSDP's backward prefetch gathers the next unit early). Under bf16 the units
compute with bf16 copies of their parameters and reduce gradients in fp32
(`mixed_precision_policy`); under gradient accumulation only the step's last backward
reduce-scatters (`gradient_sync`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from advfusion_cli.engine.safetensors_stream import StreamedTensor
from advfusion_cli.errors import UserError

NONE, DDP, FSDP = "none", "ddp", "fsdp"
LAUNCHER_FSDP_ENV = "ACCELERATE_USE_FSDP"  # set by `accelerate launch` for an FSDP config


def launcher_wants_fsdp(env: dict[str, str] | None = None) -> bool:
    """True when `accelerate launch` was configured for FSDP (`distributed_type: FSDP`)."""
    env = os.environ if env is None else env
    return env.get(LAUNCHER_FSDP_ENV, "false").strip().lower() in ("1", "true", "yes")


def resolve_distributed(
    requested: str, num_processes: int, env: dict[str, str] | None = None
) -> str:
    """`training.distributed` for this launch: none (one process), ddp or fsdp.

    Checked before anything loads, so a misconfigured launch fails at once instead of
    waiting for peers that will never start.
    """
    if requested == FSDP and num_processes < 2:
        raise UserError(
            "training.distributed=fsdp needs at least 2 processes, but this is 1: start it with "
            "`accelerate launch --num_processes N` (N >= 2), or set training.distributed=auto."
        )
    if num_processes < 2:
        return NONE
    if requested == DDP:
        return DDP
    if requested == FSDP or launcher_wants_fsdp(env):
        return FSDP
    return DDP


@contextlib.contextmanager
def without_launcher_fsdp() -> Iterator[None]:
    """Hide the launcher's FSDP switch while the Accelerator is built: advfusion shards the
    fusion itself, and accelerate's own FSDP would also shard the frozen base."""
    saved = os.environ.pop(LAUNCHER_FSDP_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[LAUNCHER_FSDP_ENV] = saved


def is_sharded(tensor: Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def full_tensor(tensor: Tensor, keep: bool = True) -> Tensor | None:
    """The whole tensor on CPU; a collective for a sharded one (every process must call it).
    keep=False: take part in the gather but drop the result (processes that do not write)."""
    if is_sharded(tensor):
        tensor = tensor.full_tensor()  # (whole shape), on the device, one tensor at a time
    return tensor.detach().to("cpu") if keep else None


def local_region(param: Tensor) -> tuple[slice, ...] | None:
    """The index region of the whole tensor that this process holds of a sharded parameter
    (None: it holds all of it), so a checkpoint reader can read just that."""
    if not is_sharded(param):
        return None
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    shape, offset = compute_local_shape_and_global_offset(
        param.shape, param.device_mesh, param.placements
    )
    return tuple(slice(start, start + size) for start, size in zip(offset, shape, strict=True))


def copy_local_into(param: Tensor, local: Tensor) -> None:
    """Copy this process's part (`local_region`, or the whole tensor) into a parameter."""
    with torch.no_grad():
        target = param.to_local() if is_sharded(param) else param
        target.copy_(local.to(target.device, target.dtype))


class Replicated:
    """One process, or DDP: every process holds the whole state; nothing to gather."""

    def __init__(self, kind: str = DDP):
        self.kind = kind

    def prepare(self, accelerator, model: nn.Module) -> nn.Module:
        return accelerator.prepare(model)

    def weight_entries(self, named: dict[str, nn.Parameter]) -> list[StreamedTensor]:
        """The trainable weights as streamed-file entries (each a CPU copy when produced)."""
        return [_entry(name, p, lambda p=p: full_tensor(p)) for name, p in named.items()]

    def optimizer_parts(self, optimizer) -> tuple[dict, list[StreamedTensor]]:
        """(the optimizer state for `state.pt`, entries of a moments file): replicated
        moments stay in `state.pt`, so there is no moments file."""
        return optimizer.state_dict(), []

    def local_optimizer_state(self, state: dict, params: list[nn.Parameter]) -> dict:
        return state

    # Whether a forward runs collectives (then every process must run as many forwards).
    forward_communicates = False

    def exporter(self, trainable):
        """The trainable's exporter (called on the main process only)."""
        return trainable.export

    # Whether every process must call the exporter (with folder None where it does not
    # write): it gathers each tensor while the main process writes it.
    exports_collectively = False

    def gradient_sync(self, accelerator, model: nn.Module, last: bool):
        """Context for one micro-batch's backward: average gradients only on the last."""
        return contextlib.nullcontext() if last else accelerator.no_sync(model)


class FusionSharded(Replicated):
    """FSDP2 over the fusion layers: one `fully_shard` unit per fusion layer, base ignored."""

    def __init__(self, units: list[nn.Module]):
        super().__init__(FSDP)
        if not units:
            raise UserError(
                "training.distributed=fsdp shards fusion layers; this model has none "
                "(adapter and LoRA stages run as DDP)."
            )
        self.units = units
        self.is_main = True

    def prepare(self, accelerator, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

        # The host reads alpha, a view, and never writes into it in place: FSDP's warning
        # about in-place writes on returned views does not apply.
        warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module \(FSDPFusionLayer\)")
        self.is_main = accelerator.is_main_process  # only it keeps gathered copies
        device = accelerator.device
        mesh = init_device_mesh(device.type, (accelerator.num_processes,))
        policy = mixed_precision_policy(accelerator.mixed_precision)
        on_meta = any(p.is_meta for unit in self.units for p in unit.parameters())
        for unit in self.units:
            fully_shard(unit, mesh=mesh, reshard_after_forward=True, mp_policy=policy)
            # The host calls forward_from_stack, not forward: all-gather around it too.
            register_fsdp_forward_method(unit, "forward_from_stack")
        if on_meta:
            from advfusion_cli.engine import attach_host

            initialise_local_shards(attach_host(model), self.units, device)
        in_units = {id(p) for unit in self.units for p in unit.parameters()}
        frozen = {p for p in model.parameters() if id(p) not in in_units}
        # The root owns no sharded state; it schedules the units' collectives and lets
        # them reshard after forward (a root unit would keep its parameters gathered).
        fully_shard(model, mesh=mesh, ignored_params=frozen)
        return model

    @contextlib.contextmanager
    def gradient_sync(self, accelerator, model: nn.Module, last: bool) -> Iterator[None]:
        """Reduce-scatter only after the step's last backward: earlier micro-batches
        accumulate unsharded gradients locally (accelerate's no_sync does nothing for FSDP2)."""
        model.set_requires_gradient_sync(last)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def weight_entries(self, named: dict[str, nn.Parameter]) -> list[StreamedTensor]:
        """Entries gathered one at a time when the file is written (every process must write
        with them: each produce is a collective; only the main process keeps the tensor)."""
        return [
            _entry(name, p, lambda p=p: full_tensor(p, self.is_main)) for name, p in named.items()
        ]

    def optimizer_parts(self, optimizer) -> tuple[dict, list[StreamedTensor]]:
        """(the optimizer state without its sharded moments, for `state.pt` on the main
        process ({} elsewhere); the moments as entries named `<param index>.<key>`, gathered
        one at a time when the moments file is written by every process)."""
        state = optimizer.state_dict()
        kept, entries = {}, []
        for index, per_param in state["state"].items():
            kept[index] = {}
            for key, value in per_param.items():
                if is_sharded(value):
                    produce = lambda v=value: full_tensor(v, self.is_main)  # noqa: E731
                    entries.append(_entry(moment_name(index, key), value, produce))
                else:
                    kept[index][key] = value  # e.g. Adam's step count: whole on every process
        return ({**state, "state": kept} if self.is_main else {}), entries

    def local_optimizer_state(self, state: dict, params: list[nn.Parameter]) -> dict:
        """Turn saved whole moments into this process's slices, matched by parameter order."""
        order = [i for group in state["param_groups"] for i in group["params"]]
        by_index = dict(zip(order, params, strict=True))
        local = {}
        for index, per_param in state["state"].items():
            param = by_index[index]
            local[index] = {
                key: _slice_like(param, value) if _is_moment(value, param) else value
                for key, value in per_param.items()
            }
        return {**state, "state": local}

    forward_communicates = True  # a unit's forward all-gathers its parameters
    exports_collectively = True  # each tensor gathered while the main process writes it

    def exporter(self, trainable):
        """The fusion's exporter; every process must call it (folder None elsewhere than on
        the main process): each tensor is gathered onto the main process's CPU, written and
        dropped before the next."""
        from advfusion_cli.engine.host_io import fusion_tensors

        host = trainable.host
        entries = self.weight_entries(fusion_tensors(host))
        return lambda folder: host.save_fusion(folder, streamed=entries, write=self.is_main)


def _entry(name: str, tensor: Tensor, produce) -> StreamedTensor:
    """A streamed-file entry for a (possibly sharded) tensor: its global shape and dtype."""
    return StreamedTensor(name, tuple(tensor.shape), tensor.dtype, produce)


def moment_name(index: int, key: str) -> str:
    """A moment's name in the moments file: the optimizer's parameter index and state key."""
    return f"{index}.{key}"


def sharded_from_rows(param: Tensor, rows: Tensor) -> Tensor:
    """A tensor sharded like `param` (a DTensor) from this process's rows of it
    (`local_region`), read from a checkpoint; no collective."""
    from torch.distributed.tensor import DTensor

    return DTensor.from_local(
        rows.to(param.device),
        param.device_mesh,
        param.placements,
        run_check=False,
        shape=param.shape,
        stride=param.stride(),
    )


# ---- sharded construction and mixed precision (issue 25) ----------------------------------


def mixed_precision_policy(mixed_precision: str):
    """FSDP's policy for the run's precision: under bf16, units all-gather bf16 parameters
    for compute while the sharded master weights, the gradient reduce-scatter and the
    optimizer state stay fp32; under fp32, no policy (everything fp32)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if mixed_precision != "bf16":
        return MixedPrecisionPolicy()
    # cast_forward_inputs off: the host hands the unit the base's own activations, and
    # autocast already runs its matmuls in bf16.
    return MixedPrecisionPolicy(
        param_dtype=torch.bfloat16, reduce_dtype=torch.float32, cast_forward_inputs=False
    )


def initialise_local_shards(host, units: list[nn.Module], device: torch.device) -> None:
    """Materialise meta-built, sharded units on `device` with exactly the values one process
    would draw: the host replays its initialisation one unit at a time on the CPU and each
    process keeps its rows; no process ever holds more than one whole unit (on the CPU)."""
    wanted = {id(unit) for unit in units}
    for unit in units:
        unit.to_empty(device=device)  # this process's (rows, ...) slices, uninitialised
    materialised = 0
    for live, initial in host.initial_fusion_layers():
        if id(live) in wanted:
            values = dict(initial.named_parameters())
            with torch.no_grad():
                for name, param in live.named_parameters():
                    _copy_own_rows(param, values[name])
            materialised += 1
            del values
        del initial  # one whole unit at a time
    if materialised != len(units):
        raise ValueError(f"initialised {materialised} of {len(units)} sharded fusion units")


def _copy_own_rows(param: Tensor, full: Tensor) -> None:
    """This process's dim-0 rows of a whole CPU tensor into its shard (never the whole
    tensor on the device)."""
    local = param.to_local()  # (rows_r, ...)
    start = _row_offset(param)
    local.copy_(full[start : start + local.shape[0]].to(local.device, local.dtype))


def _is_moment(value, param: Tensor) -> bool:
    return isinstance(value, Tensor) and tuple(value.shape) == tuple(param.shape)


def _slice_like(param: Tensor, full: Tensor) -> Tensor:
    from torch.distributed.tensor import distribute_tensor

    if is_sharded(full):
        return full
    return distribute_tensor(
        full.to(param.device), param.device_mesh, param.placements, src_data_rank=None
    )


def fusion_units(model: nn.Module) -> list[nn.Module]:
    """The fusion layers of an attached host, in module order."""
    from advfusion_cli.engine.modules.fusion import FusionLayer

    return [m for m in model.modules() if isinstance(m, FusionLayer)]


def for_run(kind: str, model: nn.Module) -> Replicated:
    """The strategy for one run: FSDP for a model with fusion layers, else replicated."""
    if kind == FSDP:
        units = fusion_units(model)
        if units:
            return FusionSharded(units)
        return Replicated(DDP)  # adapter / LoRA stages: small, run as DDP (documented)
    return Replicated(kind)


def prepare_training(requested: str, accelerator, trainable) -> tuple[Replicated, nn.Module]:
    """Prepare a run's model for this launch: (layout, the model to call).

    Under FSDP the `Trainable` is updated in place: its `params` become the sharded
    parameters (fully_shard replaces the objects) and its `extra_loss` the sharded W_V
    regularizer, so everything after this sees the tensors that train.
    """
    kind = resolve_distributed(requested, accelerator.num_processes)
    layout = for_run(kind, trainable.model)
    prepared = layout.prepare(accelerator, trainable.model)
    if isinstance(layout, FusionSharded):
        current = dict(trainable.model.named_parameters())
        trainable.params = {name: current[name] for name in trainable.params}
        weight = trainable.host.fusion_state.config.regularization_weight
        trainable.extra_loss = lambda: sharded_regularization(layout.units, weight)
    return layout, prepared


def sharded_regularization(units: list[nn.Module], weight: float) -> Tensor:
    """weight * sum ||I - W_V||_F^2 over the units, from each process's rows of W_V.

    The value is the whole sum on every process (one all-reduce); the gradient reaching each
    process's slice is that slice's own 2 weight (W_V - I) rows, exactly what DDP would hold
    after averaging identical per-process terms.
    """
    import torch.distributed as dist

    parts = []
    for unit in units:
        weight_v = unit.value.weight  # DTensor (h, h) sharded on rows
        local = weight_v.to_local().float()  # (rows_r, h)
        start = _row_offset(weight_v)
        identity = torch.zeros_like(local)
        rows = torch.arange(local.shape[0], device=local.device)
        identity[rows, rows + start] = 1.0
        parts.append((identity - local).pow(2).sum())
    mine = weight * torch.stack(parts).sum()
    total = mine.detach().clone()
    dist.all_reduce(total)
    return mine + (total - mine.detach())  # value: the whole sum; gradient: this slice's


def _row_offset(tensor: Tensor) -> int:
    """First global row of this process's dim-0 shard (torch.chunk layout, as FSDP2 uses)."""
    rows = tensor.shape[0]
    world = tensor.device_mesh.size()
    rank = tensor.device_mesh.get_local_rank()
    per = -(-rows // world)  # ceil
    return min(rank * per, rows)
