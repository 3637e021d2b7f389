"""Optimizers and FSDP: torch AdamW for sharded parameters, bitsandbytes refused in one line,
paged state kept paged after a resume, paged buffers released at a run's end."""

from __future__ import annotations

import pytest
import torch
from conftest import one_line_error

from advfusion_cli.errors import UserError
from advfusion_cli.workflows import optim


def test_auto_is_torch_adamw_for_sharded_parameters_and_whole_ones_on_cpu():
    params = [torch.nn.Parameter(torch.zeros(4, 4))]
    for sharded in (False, True):
        optimizer = optim.build_optimizer(params, "auto", 1e-3, 0.0, sharded=sharded)
        assert type(optimizer) is torch.optim.AdamW
        assert not optimizer.defaults["fused"]  # fused only on CUDA


def test_a_bitsandbytes_optimizer_for_sharded_parameters_is_one_clear_error():
    params = [torch.nn.Parameter(torch.zeros(4, 4))]
    with pytest.raises(UserError) as error:
        optim.build_optimizer(params, "paged_adamw_32bit", 1e-3, 0.0, sharded=True)
    message = str(error.value)
    assert "training.optimizer=paged_adamw_32bit" in message and "FSDP" in message
    assert "\n" not in message
    optim.check_optimizer("paged_adamw_32bit", "ddp")  # fine elsewhere
    optim.check_optimizer("adamw", "fsdp")


@pytest.mark.parametrize(
    "sets",
    [
        ["--set", "training.optimizer=paged_adamw_32bit", "--set", "training.distributed=fsdp"],
        ["--preset", "paper", "--set", "training.distributed=fsdp"],  # the paper's optimizer
    ],
)
def test_validate_refuses_a_bitsandbytes_optimizer_under_fsdp(cli, sets):
    one_line_error(cli("validate", *sets), "training.optimizer", "adamw")


def test_validate_accepts_fsdp_with_the_paper_preset_and_adamw(cli):
    result = cli(
        "validate",
        "--preset",
        "paper",
        "--set",
        "training.distributed=fsdp",
        "--set",
        "training.optimizer=adamw",
    )
    assert result.exit_code == 0, result.stderr


class _FakePaged:
    """Stands in for bitsandbytes' managed allocation (CUDA only): a tagged CPU tensor."""

    def __init__(self, optimizer):
        self.optimizer = optimizer
        self.allocated: list[torch.Tensor] = []

    def __call__(self, param, dtype=torch.float32):
        buffer = torch.zeros_like(param, dtype=dtype)
        buffer.is_paged = True
        self.allocated.append(buffer)
        return buffer


def test_a_resumed_paged_optimizer_keeps_its_state_in_paged_buffers(monkeypatch):
    """load_state_dict hands bitsandbytes ordinary tensors (it then moves them to the
    device, unpaged); repage_state puts the same values back into paged buffers."""
    bnb = pytest.importorskip("bitsandbytes")
    param = torch.nn.Parameter(torch.randn(400, 300))  # >= 1e5 elements: paged
    optimizer = bnb.optim.PagedAdamW32bit([param], lr=1e-3)
    saved = {
        "state": {0: {"step": 3, "state1": torch.randn(400, 300), "state2": torch.rand(400, 300)}},
        "param_groups": optimizer.state_dict()["param_groups"],
    }
    optimizer.load_state_dict(saved)
    assert not getattr(optimizer.state[param]["state1"], "is_paged", False)  # the defect
    paged = _FakePaged(optimizer)
    monkeypatch.setattr(optimizer, "get_state_buffer", paged)
    optim.repage_state(optimizer)
    state = optimizer.state[param]
    assert len(paged.allocated) == 2
    for key in ("state1", "state2"):
        assert getattr(state[key], "is_paged", False)
        assert torch.equal(state[key], saved["state"][0][key])
    assert state["step"] == 3


def test_repage_leaves_torch_optimizers_alone():
    param = torch.nn.Parameter(torch.randn(4))
    optimizer = torch.optim.AdamW([param])
    param.grad = torch.ones(4)
    optimizer.step()
    before = dict(optimizer.state[param])
    optim.repage_state(optimizer)
    assert all(optimizer.state[param][k] is v for k, v in before.items())


def test_paged_buffers_are_counted_then_released(monkeypatch):
    bnb_functional = pytest.importorskip("bitsandbytes.functional")
    manager = bnb_functional.GlobalPageManager.get_instance()
    monkeypatch.setattr(manager, "paged_tensors", [torch.zeros(256, 1024), torch.zeros(1024)])
    assert optim.paged_memory_mb() == pytest.approx((256 * 1024 + 1024) * 4 / 2**20)
    assert optim.release_paged_buffers() == 2
    assert manager.paged_tensors == [] and optim.paged_memory_mb() == 0.0
