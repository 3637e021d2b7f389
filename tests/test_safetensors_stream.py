"""The streaming safetensors writer: the same bytes as safetensors' own save_file, read back
by safe_open, and only one produced tensor alive at a time; and the checkpoint's moments
file put back into the optimizer state as the trainer resumes it."""

from __future__ import annotations

import weakref

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from advfusion_cli.engine.safetensors_stream import StreamedTensor, write_streamed
from advfusion_cli.workflows import checkpoint as ckpt
from advfusion_cli.workflows.sharding import Replicated


def mixed_tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "layers.0.query.weight": torch.randn(6, 5, generator=generator),
        "layers.0.query.bias": torch.randn(6, generator=generator),
        "a.half": torch.randn(3, 4, generator=generator).bfloat16(),
        "step": torch.tensor(7.0),  # a 0-d tensor
        "counts": torch.arange(5),  # int64: laid out before the fp32 ones
        "empty": torch.zeros(0, 3),
    }


def entries_of(tensors: dict[str, torch.Tensor], produce=None) -> list[StreamedTensor]:
    produce = produce or (lambda name: tensors[name].clone())
    return [
        StreamedTensor(name, tuple(t.shape), t.dtype, lambda n=name: produce(n))
        for name, t in tensors.items()
    ]


@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_streamed_file_is_byte_for_byte_save_file_and_loads_back(tmp_path, metadata):
    tensors = mixed_tensors()
    save_file(tensors, str(tmp_path / "reference.safetensors"), metadata=metadata)
    write_streamed(tmp_path / "streamed.safetensors", entries_of(tensors), metadata)
    streamed = (tmp_path / "streamed.safetensors").read_bytes()
    assert streamed == (tmp_path / "reference.safetensors").read_bytes()
    with safe_open(str(tmp_path / "streamed.safetensors"), framework="pt") as handle:
        assert sorted(handle.keys()) == sorted(tensors)
        assert handle.metadata() == metadata
        for name, tensor in tensors.items():
            loaded = handle.get_tensor(name)
            assert loaded.dtype == tensor.dtype and torch.equal(loaded, tensor), name


def test_only_one_produced_tensor_is_alive_at_a_time(tmp_path):
    tensors = {f"w{i}": torch.full((64, 64), float(i)) for i in range(6)}
    live, most = [0], [0]

    def produce(name: str) -> torch.Tensor:
        whole = tensors[name].clone()  # stands in for a tensor gathered from its shards
        live[0] += 1
        most[0] = max(most[0], live[0])
        weakref.finalize(whole, lambda: live.__setitem__(0, live[0] - 1))
        return whole

    write_streamed(tmp_path / "w.safetensors", entries_of(tensors, produce))
    assert most[0] == 1 and live[0] == 0
    with safe_open(str(tmp_path / "w.safetensors"), framework="pt") as handle:
        assert all(torch.equal(handle.get_tensor(n), t) for n, t in tensors.items())


def test_a_process_that_does_not_write_produces_every_tensor_once(tmp_path):
    tensors = mixed_tensors()
    produced = []
    write_streamed(None, entries_of(tensors, lambda name: produced.append(name)))
    assert sorted(produced) == sorted(tensors)  # each gather joined exactly once
    assert list(tmp_path.iterdir()) == []


def test_a_tensor_unlike_its_header_entry_stops_the_write(tmp_path):
    entry = StreamedTensor("w", (2, 3), torch.float32, lambda: torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"w: expected \(2, 3\)"):
        write_streamed(tmp_path / "w.safetensors", [entry])


def test_moments_file_is_put_back_where_state_pt_held_them(tmp_path):
    """A checkpoint whose moments are in the moments file resumes into the same optimizer
    state as one whose moments are in state.pt (the older layout, read unchanged)."""
    params = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]
    optimizer = torch.optim.AdamW(params, lr=0.1)
    sum((p**2).sum() for p in params).backward()
    optimizer.step()
    whole = optimizer.state_dict()
    kept = {i: {"step": s["step"]} for i, s in whole["state"].items()}
    moments = [
        StreamedTensor(f"{i}.{key}", tuple(v.shape), v.dtype, lambda v=v: v)
        for i, s in whole["state"].items()
        for key, v in s.items()
        if key != "step"
    ]
    write_streamed(tmp_path / ckpt.MOMENTS_FILE, moments)
    restored = ckpt.with_moments(tmp_path, {**whole, "state": kept}, params)
    assert restored["state"].keys() == whole["state"].keys()
    for index, saved in whole["state"].items():
        assert restored["state"][index].keys() == saved.keys()
        assert all(torch.equal(restored["state"][index][k], v) for k, v in saved.items())
    assert ckpt.with_moments(tmp_path / "old", whole, params) is whole  # no moments file


def test_replicated_checkpoints_keep_the_moments_in_state_pt():
    """Single-process and DDP checkpoints are unchanged: no moments file, every moment in
    the optimizer state that goes to state.pt."""
    param = torch.nn.Parameter(torch.randn(3))
    optimizer = torch.optim.AdamW([param])
    param.sum().backward()
    optimizer.step()
    state, moments = Replicated().optimizer_parts(optimizer)
    assert moments == []
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def test_best_weights_are_streamed_as_save_file_wrote_them(tmp_path):
    named = {
        name: torch.nn.Parameter(t) for name, t in mixed_tensors().items() if t.is_floating_point()
    }
    ckpt.save_weights(tmp_path / ckpt.WEIGHTS_FILE, Replicated().weight_entries(named))
    save_file({n: p.detach() for n, p in named.items()}, str(tmp_path / "reference"))
    assert (tmp_path / ckpt.WEIGHTS_FILE).read_bytes() == (tmp_path / "reference").read_bytes()
    loaded = {n: torch.nn.Parameter(torch.zeros_like(p)) for n, p in named.items()}
    ckpt.load_weights_into(tmp_path / ckpt.WEIGHTS_FILE, loaded)
    assert all(torch.equal(loaded[n], p) for n, p in named.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([ckpt.WEIGHTS_FILE, "reference"])
