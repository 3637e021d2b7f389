"""Reference-vs-candidate comparisons for the GPU tier (`-m gpu`), usable on CPU too.

The reference is always the fp32 CPU result of the same weights and inputs. The candidate is
the CUDA run the workflows make: bf16 base weights, fp32 adapter/fusion master weights, the
forward under bf16 autocast. The same code runs with a CPU candidate (CPU bf16 autocast) in
the default tier, so the comparison itself is tested where there is no GPU.

Tolerances, from bf16's precision: bf16 keeps 8 significant bits, so one rounding moves a
value by at most u = 2**-9 (about 2e-3) of itself. Between the fp32 reference and the
candidate lie: the base weights rounded once to bf16, and every autocast matmul's inputs and
output rounded (products accumulate in fp32). In the 2-layer test models a logit sits behind
about 15 such roundings; independent errors add like a random walk, so the expected relative
error is about sqrt(15) u = 8e-3. FORWARD_TOL = 16 u (3.1e-2) leaves a factor of 4 for
correlated errors. Gradients pass through the same roundings again on the way back (and the
softmax's), so GRADIENT_TOL = 32 u (6.3e-2). The errors are measured as ||c - r|| / ||r|| over
a whole tensor (not element by element: single elements near zero carry no relative meaning).

The logits alone are a weak witness of the fusion: an adapter's delta and the fusion's W_V
term are added to the residual stream, which carries most of each hidden state, so a defect
in them reaches the logits diluted. One adapter's output mis-scaled by 5%, or W_V by 5%,
moves the logits by only about 1.1e-2, inside FORWARD_TOL. So the forward is also compared
where the fusion computes, undiluted: each adapter's output (its delta z_n, slot by slot) and
the fusion's W_V term at every fused place. These sit behind fewer roundings than the logits
(the layers below them, then one adapter or one W_V), so their bf16 error is at most the
logits' and FORWARD_TOL bounds them too; a 5% mis-scaling moves its tensor by 5e-2 = 25.6 u,
1.6 x FORWARD_TOL. A defect (a slot that is not masked, a wrong W_V, an adapter dropped or
mis-scaled by a few percent) fails; tests/test_gpu_reference.py checks that such defects fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

BF16_UNIT_ROUNDOFF = 2.0**-9
FORWARD_TOL = 16 * BF16_UNIT_ROUNDOFF
GRADIENT_TOL = 32 * BF16_UNIT_ROUNDOFF

LANGS = ["python", "java", "ruby"]
TARGET = "ruby"
FUSION_KINDS = ["adapterfusion", "advfusion-masked", "advfusion-restored", "compacter-fusion"]


def relative_error(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    """||candidate - reference|| / ||reference||, in float64 on the CPU."""
    c = candidate.detach().to("cpu", torch.float64)
    r = reference.detach().to("cpu", torch.float64)
    if c.shape != r.shape:
        raise AssertionError(f"shape {tuple(c.shape)} against the reference's {tuple(r.shape)}")
    if not torch.isfinite(c).all():
        raise AssertionError("the candidate holds inf or nan")
    norm = r.norm()
    if norm == 0:
        return float(c.norm())  # an exactly-zero reference: the candidate's size is the error
    return float((c - r).norm() / norm)


def assert_close_to_reference(
    candidate: torch.Tensor, reference: torch.Tensor, tolerance: float, what: str
) -> float:
    """The relative error, or an AssertionError naming `what`, the error and the tolerance."""
    error = relative_error(candidate, reference)
    if not error <= tolerance:
        raise AssertionError(f"{what}: relative error {error:.3g} > tolerance {tolerance:.3g}")
    return error


@dataclass
class FusionRun:
    """What one forward + backward of a fused model produced (all on the CPU, fp32)."""

    logits: torch.Tensor  # (batch, seq, vocab)
    loss: torch.Tensor  # ()
    grads: dict[str, torch.Tensor] = field(default_factory=dict)  # fusion parameter -> grad
    # "adapter <lang> at <place>" -> its delta (batch, seq, d); "W_V term at <place>" -> the
    # fusion's W_V output (batch, seq, d): the forward where the fusion computes
    internals: dict[str, torch.Tensor] = field(default_factory=dict)


def make_fusion_folders(model_dir: Path, out: Path, kind: str) -> None:
    """Random adapters and a fusion with peaked attention, saved under `out` (fp32, CPU)."""
    from advfusion_cli.engine import AdapterConfig, attach_host, load_model

    model = load_model(model_dir, dtype="float32", device_map="cpu")
    host = attach_host(model, adapter_dtype=torch.float32)
    torch.manual_seed(11)
    for lang in LANGS:
        config = (
            AdapterConfig.compacter(reduction_factor=8)
            if kind == "compacter-fusion"
            else AdapterConfig.task_adapter(init_std=0.2)
        )
        host.add_adapter(lang, config)
        if kind == "compacter-fusion":  # a Compacter starts near zero: give it weight
            with torch.no_grad():
                for param in host.adapter_parameters(lang):
                    param.normal_(0.0, 0.3)
        host.save_adapter(lang, out / lang)
    host.fuse(LANGS)
    with torch.no_grad():  # a trained-looking fusion: attention far from uniform
        for name, param in _fusion_named_parameters(host):
            if name.endswith("value.weight"):
                param.add_(torch.randn_like(param) * 0.05)
            else:
                param.normal_(0.0, 0.5)
    host.save_fusion(out / "fusion")


def _fusion_named_parameters(host) -> list[tuple[str, torch.nn.Parameter]]:
    found = []
    for index in range(host.num_layers):
        for place in host.fusion_state.places:
            fusion = host.place(index, place).fusion
            found += [(f"layers.{index}.{place}.{n}", p) for n, p in fusion.named_parameters()]
    return found


def record_internals(host, found: dict[str, torch.Tensor]) -> None:
    """Make every fused place also write its adapters' deltas and its W_V term into `found`
    (under the autocast the forward runs in) as the model runs forward."""
    names = list(host.fused_names)
    for index in range(host.num_layers):
        for place in host.fusion_state.places:
            wrapper = host.place(index, place)
            where = f"layers.{index}.{place}"
            wrapper.fusion.forward_from_stack = _recording(
                wrapper.fusion.forward_from_stack, names, where, found
            )


def _recording(forward_from_stack, names: list[str], where: str, found: dict):
    def recording(query, x, stack, f, removed=None):
        out, alpha = forward_from_stack(query, x, stack, f, removed)
        with torch.no_grad():
            deltas = stack(x)  # (B, T, d) -> (B, T, N, d): each adapter's delta
            for slot, name in enumerate(names):
                found[f"adapter {name} at {where}"] = deltas[..., slot, :].float().cpu()
            found[f"W_V term at {where}"] = (out - f).float().cpu()  # W_V (sum_n alpha_n z_n)
        return out, alpha

    return recording


def mis_scale_adapter(language: str, factor: float):
    """A tamper for `run_fusion`: `language`'s adapter output (its delta) times `factor` at
    every place (its up projection scaled: a bottleneck's weight and bias, a Compacter's
    factor and bias)."""

    def tamper(host) -> None:
        with torch.no_grad():
            for index in range(host.num_layers):
                for place in host.fusion_state.places:
                    adapter = host.place(index, place).adapters[language]
                    if hasattr(adapter, "up"):
                        scaled = (adapter.up.weight, adapter.up.bias)
                    else:  # PHM: W_up = sum_i A_i kron (s_i t_i), linear in s
                        scaled = (adapter.up_s, adapter.up_bias)
                    for tensor in scaled:
                        tensor.mul_(factor)

    return tamper


def mis_scale_value(factor: float):
    """A tamper for `run_fusion`: every fusion's W_V times `factor`."""

    def tamper(host) -> None:
        with torch.no_grad():
            for index in range(host.num_layers):
                for place in host.fusion_state.places:
                    host.place(index, place).fusion.value.weight.mul_(factor)

    return tamper


def fusion_inputs(vocab: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels) of shape (2, 12), fixed."""
    ids = torch.randint(3, vocab, (2, 12), generator=torch.Generator().manual_seed(5))
    return ids, ids.clone()


def run_fusion(
    model_dir: Path,
    folders: Path,
    kind: str,
    device: str,
    *,
    bf16: bool,
    tamper=None,
) -> FusionRun:
    """Load base + adapters + fusion on `device`, forward (bf16 autocast and bf16 base when
    `bf16`) and backward of LM loss + W_V regularization; `tamper(host)` injects a defect."""
    from advfusion_cli.engine import attach_host, load_model

    dtype = "bfloat16" if bf16 else "float32"
    device_map = "cpu" if device == "cpu" else {"": torch.device(device).index or 0}
    model = load_model(model_dir, dtype=dtype, device_map=device_map)
    host = attach_host(model, adapter_dtype=torch.float32)  # fp32 masters, as the workflows
    for lang in LANGS:
        host.load_adapter(folders / lang)
    host.load_fusion(folders / "fusion")
    if kind in ("advfusion-masked", "advfusion-restored"):
        host.mask(TARGET)
    if kind == "advfusion-restored":
        host.unmask(TARGET)
    if tamper is not None:
        tamper(host)
    params = dict(_fusion_named_parameters(host))
    internals: dict[str, torch.Tensor] = {}
    record_internals(host, internals)
    host.freeze_for_fusion_training()
    model.eval()  # no dropout: both sides compute the same function
    ids, labels = (t.to(device) for t in fusion_inputs())
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        output = model(input_ids=ids, labels=labels)
        loss = output.loss + host.fusion_regularization()
    loss.backward()
    return FusionRun(
        logits=output.logits.detach().float().cpu(),
        loss=loss.detach().float().cpu(),
        grads={n: p.grad.detach().float().cpu() for n, p in params.items() if p.grad is not None},
        internals=internals,
    )


def compare_forward_internals(candidate: FusionRun, reference: FusionRun) -> float:
    """Asserts each adapter's output and each W_V term within FORWARD_TOL (see the module
    docstring: where a few percent of mis-scaling shows undiluted); returns the worst error."""
    assert candidate.internals.keys() == reference.internals.keys() and reference.internals
    return max(
        assert_close_to_reference(candidate.internals[name], tensor, FORWARD_TOL, name)
        for name, tensor in reference.internals.items()
    )


def compare_fusion_runs(candidate: FusionRun, reference: FusionRun) -> dict[str, float]:
    """Asserts logits, loss, each adapter's output and W_V term, and every fusion gradient
    within tolerance; returns the errors."""
    assert candidate.grads.keys() == reference.grads.keys() and reference.grads
    errors = {
        "logits": assert_close_to_reference(
            candidate.logits, reference.logits, FORWARD_TOL, "logits"
        ),
        "loss": assert_close_to_reference(candidate.loss, reference.loss, FORWARD_TOL, "loss"),
        "worst_internal": compare_forward_internals(candidate, reference),
    }
    worst = 0.0
    for name, grad in reference.grads.items():
        if name.endswith("key.bias"):
            # Q.b_K is the same for every slot and the softmax ignores it: the exact gradient
            # is 0, both sides hold only rounding noise. Noise it must stay, next to W_K's.
            signal = reference.grads[name.replace("key.bias", "key.weight")].norm()
            noise = candidate.grads[name].norm()
            assert noise <= 1e-3 * signal, f"grad {name}: {noise:.3g}, expected ~0"
            continue
        worst = max(
            worst,
            assert_close_to_reference(candidate.grads[name], grad, GRADIENT_TOL, f"grad {name}"),
        )
    errors["worst_gradient"] = worst
    return errors


# ---- greedy generation ------------------------------------------------------------------------


def first_divergence(a: torch.Tensor, b: torch.Tensor) -> int | None:
    """First column where two (batch, length) token tensors differ, or None."""
    if a.shape != b.shape:
        raise AssertionError(f"shapes {tuple(a.shape)} and {tuple(b.shape)} differ")
    differs = (a != b).any(dim=0).nonzero()
    return int(differs[0]) if len(differs) else None


def assert_same_greedy(
    tokens: torch.Tensor,
    scores: list[torch.Tensor],
    ref_tokens: torch.Tensor,
    ref_scores: list[torch.Tensor],
    prompt_length: int,
    *,
    score_tol: float,
    tie_margin: float,
) -> int:
    """Two greedy decodings of the same prompts agree: same tokens, and next-token scores
    within `score_tol` (max abs) up to where they may part. They may part only at a near tie:
    where the reference's best and second-best scores are within `tie_margin`, rounding can
    legitimately pick the other token. Returns how many new tokens were compared."""
    split = first_divergence(tokens, ref_tokens)
    steps = len(ref_scores) if split is None else split - prompt_length + 1
    for step in range(steps):
        gap = (scores[step].float().cpu() - ref_scores[step].float().cpu()).abs().max()
        if gap > score_tol:
            raise AssertionError(f"new token {step}: scores differ by {gap:.3g} > {score_tol:.3g}")
    if split is not None:
        step = split - prompt_length
        top2 = ref_scores[step].float().topk(2, dim=-1).values
        margin = float((top2[:, 0] - top2[:, 1]).min())
        if margin > tie_margin:
            raise AssertionError(
                f"greedy outputs part at new token {step} where the best token led by "
                f"{margin:.3g} (> {tie_margin:.3g}, not a near tie)"
            )
        return step
    return len(ref_scores)
