"""GPU tier, engine level: every result compared with a reference, measured numbers recorded
(`record_property`: they land in `make gpu-check`'s report).

- fusion forward/backward under CUDA bf16 autocast against the fp32 CPU result of the same
  weights (tolerances: tests/gpu_reference.py), and a 5% mis-scaling of one adapter's output
  or of W_V failing that comparison;
- greedy generation with a fusion on CUDA: KV cache against no cache, batched against one at a
  time, and against fp32 CPU;
- paged AdamW 32-bit state through save/load continuing bit for bit;
- peak memory of fusion training at DeepSeek-Coder-1.3B's shape within a stated bound.
"""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model
from gpu_reference import (
    FORWARD_TOL,
    FUSION_KINDS,
    LANGS,
    assert_same_greedy,
    compare_fusion_runs,
    make_fusion_folders,
    mis_scale_adapter,
    mis_scale_value,
    run_fusion,
)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu-engine") / "model"
    build_tiny_model("llama").save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", FUSION_KINDS)
def test_fusion_under_cuda_bf16_autocast_matches_fp32_cpu(
    kind, model_dir, tmp_path, record_property
):
    make_fusion_folders(model_dir, tmp_path, kind)
    reference = run_fusion(model_dir, tmp_path, kind, "cpu", bf16=False)
    candidate = run_fusion(model_dir, tmp_path, kind, "cuda", bf16=True)
    errors = compare_fusion_runs(candidate, reference)
    for name, value in errors.items():
        record_property(f"{name}_rel_err", f"{value:.3g}")


@pytest.mark.parametrize(
    ("tamper", "named"),
    [(mis_scale_adapter("java", 1.05), "adapter java at"), (mis_scale_value(1.05), "W_V term at")],
    ids=["java-adapter-x1.05", "W_V-x1.05"],
)
def test_a_5_percent_mis_scaling_fails_the_cuda_comparison(model_dir, tmp_path, tamper, named):
    """A defect of the size the logits alone let through (about 1.1e-2 < FORWARD_TOL) fails
    on CUDA as on CPU (tests/test_gpu_reference.py): each adapter's output and each W_V term
    are compared too."""
    make_fusion_folders(model_dir, tmp_path, "adapterfusion")
    reference = run_fusion(model_dir, tmp_path, "adapterfusion", "cpu", bf16=False)
    broken = run_fusion(model_dir, tmp_path, "adapterfusion", "cuda", bf16=True, tamper=tamper)
    with pytest.raises(AssertionError, match=named):
        compare_fusion_runs(broken, reference)


# ---- generation -------------------------------------------------------------------------------

NEW_TOKENS = 16
PROMPTS = [[5, 9, 14, 20, 33, 41, 7], [12, 60, 3], [90, 91, 92, 93, 94]]


@pytest.fixture(scope="module")
def decisive_model_dir(tmp_path_factory):
    """The tiny model with its output head scaled up: a random model's next-token scores are
    nearly flat, and near ties would let rounding pick another token at every step."""
    model = build_tiny_model("llama")
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)
    folder = tmp_path_factory.mktemp("gpu-gen") / "model"
    model.save_pretrained(folder)
    return folder


def fused_model(model_dir, saved, device: str, dtype: str):
    """Base + the saved AdapterFusion, adapters in the base's dtype (bf16 is the engine's
    default on CUDA)."""
    from advfusion_cli.engine import attach_host, load_model

    device_map = "cpu" if device == "cpu" else {"": 0}
    model = load_model(model_dir, dtype=dtype, device_map=device_map)
    host = attach_host(model, adapter_dtype=getattr(torch, dtype))
    for lang in LANGS:
        host.load_adapter(saved / lang)
    host.load_fusion(saved / "fusion")
    return model.eval()


def greedy(model, ids, mask, *, use_cache: bool):
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        use_cache=use_cache,
        pad_token_id=0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    return out.sequences, list(out.scores)


def tolerances(scores: list[torch.Tensor], relative: float) -> dict[str, float]:
    """Scores may differ by `relative` of their size; a near tie is twice that."""
    size = max(float(s.float().abs().max()) for s in scores)
    return {"score_tol": relative * size, "tie_margin": 2 * relative * size}


def left_padded(device: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The prompts as the generation workflow batches them: left padding, attention mask."""
    longest = max(map(len, PROMPTS))
    ids = torch.tensor([[0] * (longest - len(p)) + p for p in PROMPTS])
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in PROMPTS])
    return ids.to(device), mask.to(device), longest


def check_cache_and_batching(model, relative: float, record_property, label: str) -> None:
    """KV cache against recomputing every position; each batched prompt against itself
    alone. Returns nothing; records how many new tokens agreed before a permitted near tie."""
    ids, mask, longest = left_padded("cuda")
    cached, cached_scores = greedy(model, ids, mask, use_cache=True)
    recomputed, recomputed_scores = greedy(model, ids, mask, use_cache=False)
    tol = tolerances(recomputed_scores, relative)
    same = assert_same_greedy(cached, cached_scores, recomputed, recomputed_scores, longest, **tol)
    record_property(f"{label}_cache_vs_no_cache_equal_tokens", same)
    agreed = []
    for row, prompt in enumerate(PROMPTS):
        alone, alone_scores = greedy(model, torch.tensor([prompt]).cuda(), None, use_cache=True)
        batched = cached[row : row + 1, longest - len(prompt) :]
        batched_scores = [s[row : row + 1] for s in cached_scores]
        agreed.append(
            assert_same_greedy(batched, batched_scores, alone, alone_scores, len(prompt), **tol)
        )
    record_property(f"{label}_batched_vs_alone_equal_tokens", " ".join(map(str, agreed)))


def test_generation_with_a_fusion_on_cuda_kv_cache_batching_and_fp32_cpu(
    decisive_model_dir, tmp_path, record_property
):
    make_fusion_folders(decisive_model_dir, tmp_path, "adapterfusion")
    # fp32 on CUDA: cache and batching change only the order of sums, so scores agree to
    # 1e-4 of their size (fp32 rounding, far below any defect)
    fp32 = fused_model(decisive_model_dir, tmp_path, "cuda", "float32")
    check_cache_and_batching(fp32, 1e-4, record_property, "fp32")
    # bf16 on CUDA, as generation runs there: the same within bf16 rounding
    bf16 = fused_model(decisive_model_dir, tmp_path, "cuda", "bfloat16")
    check_cache_and_batching(bf16, FORWARD_TOL, record_property, "bf16")
    # and bf16 CUDA against the fp32 CPU reference of the same weights
    ids, mask, longest = left_padded("cuda")
    tokens, scores = greedy(bf16, ids, mask, use_cache=True)
    reference = fused_model(decisive_model_dir, tmp_path, "cpu", "float32")
    ref, ref_scores = greedy(reference, ids.cpu(), mask.cpu(), use_cache=True)
    tol = tolerances(ref_scores, FORWARD_TOL)
    same = assert_same_greedy(tokens.cpu(), scores, ref, ref_scores, longest, **tol)
    record_property("cuda_bf16_vs_cpu_fp32_equal_tokens", same)


# ---- paged AdamW ------------------------------------------------------------------------------


def is_paged(optimizer, param) -> bool:
    """Whether the optimizer's first moment of `param` lives in bitsandbytes' paged memory."""
    return bool(getattr(optimizer.state[param]["state1"], "is_paged", False))


@pytest.mark.parametrize("route", ["carried", "checkpoint"])
def test_paged_adamw_state_carried_or_checkpointed_continues_bit_for_bit(
    route, tmp_path, record_property
):
    """Paged AdamW 32-bit (`auto` on CUDA) through the trainer's two routes: the state dict
    AdvFusion carries from phase 1 into phase 2, and a checkpoint's state.pt read back with
    `torch.load(map_location="cpu", weights_only=True)`. The (512, 256) weight is paged
    (bitsandbytes pages tensors of 1e5 elements and more), the bias is not."""
    from advfusion_cli.workflows import checkpoint as ckpt
    from advfusion_cli.workflows.optim import build_optimizer, repage_state

    torch.manual_seed(0)
    start = [torch.randn(512, 256), torch.randn(256)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(6)]

    def make(initial):
        params = [torch.nn.Parameter(p.clone().cuda()) for p in initial]
        return params, build_optimizer(params, "auto", 1e-2, 0.01)

    def step(params, optimizer, grad):
        for p, g in zip(params, grad, strict=True):
            p.grad = g.cuda()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    params, optimizer = make(start)
    assert type(optimizer).__name__ == "PagedAdamW32bit"
    for grad in grads[:3]:
        step(params, optimizer, grad)
    assert is_paged(optimizer, params[0]) and not is_paged(optimizer, params[1])
    if route == "carried":
        state = optimizer.state_dict()
    else:
        torch.save({"optimizer": optimizer.state_dict()}, tmp_path / ckpt.STATE_FILE)
        state = ckpt.read_state(tmp_path)["optimizer"]
    at_boundary = [p.detach().cpu() for p in params]
    resumed, fresh = make(at_boundary)
    fresh.load_state_dict(state)  # what the trainer does with either ...
    repage_state(fresh)  # ... then its moments go back into paged buffers
    for grad in grads[3:]:
        step(params, optimizer, grad)
        step(resumed, fresh, grad)
    for p, q in zip(params, resumed, strict=True):
        assert torch.equal(p, q)  # elementwise kernels: deterministic, bit for bit
    assert {float(s["step"]) for s in fresh.state.values()} == {6.0}
    # bitsandbytes' load_state_dict leaves ordinary tensors that its first step moves to the
    # device (GPU memory); repage_state kept the large moment paged
    assert is_paged(fresh, resumed[0]) and not is_paged(fresh, resumed[1])


# ---- peak memory at a 1B-class shape ----------------------------------------------------------

GIB = 2**30
# DeepSeek-Coder-1.3B's shape, NF4 base, full-rank fusion over 3 task adapters, batch 4 x 512,
# gradient checkpointing and paged AdamW as the paper preset trains. Expected peak: base about
# 1 GiB (NF4 body + bf16 embeddings and head) + the fusion's training state 16 B x 302 M
# parameters = 4.5 GiB (fp32 weights, gradients, two AdamW moments; docs/performance.md) +
# activations about 1.5 GiB (24 layer inputs, one recomputed layer, fp32 logits and their
# gradient). Bound: 8 GiB.
PEAK_BOUND_GIB = 8.0


def test_fusion_training_peak_memory_at_1b_shape_within_bound(record_property):
    from advfusion_cli.bench.shapes import BenchShapes, build_base_model
    from advfusion_cli.engine import AdapterConfig, attach_host, enable_gradient_checkpointing
    from advfusion_cli.workflows.optim import build_optimizer

    shapes = BenchShapes(
        hidden=2048, layers=24, heads=16, intermediate=5504, vocab=32256, batch=4, seq=512
    )
    model = build_base_model(
        shapes, max_positions=512, dtype=torch.bfloat16, device="cuda", quantization="4bit"
    )
    host = attach_host(model, adapter_dtype=torch.float32)
    for lang in LANGS:
        host.add_adapter(lang, AdapterConfig.task_adapter())
    host.fuse(LANGS)
    host.mask("ruby")
    params = host.freeze_for_fusion_training()
    trainable = sum(p.numel() for p in params)
    assert 290e6 < trainable < 310e6  # 24 x (3 h^2 + 2 h), the full-rank fusion
    enable_gradient_checkpointing(model)
    model.train()
    optimizer = build_optimizer(params, "auto", 1e-4, 0.0)
    ids = torch.randint(3, shapes.vocab, (shapes.batch, shapes.seq), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    losses = []
    for _ in range(2):  # the second step holds the optimizer state from the first
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss + host.fusion_regularization()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / GIB
    record_property("weights_gib", f"{before / GIB:.2f}")
    record_property("peak_gib", f"{peak:.2f}")
    record_property("bound_gib", PEAK_BOUND_GIB)
    assert all(map(torch.isfinite, map(torch.tensor, losses)))
    assert peak <= PEAK_BOUND_GIB, f"peak {peak:.2f} GiB over the {PEAK_BOUND_GIB} GiB bound"
