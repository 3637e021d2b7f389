"""The GPU tier's reference comparisons, run on CPU: a bf16-autocast fusion forward/backward
(the GPU tier's candidate, here on CPU) agrees with the fp32 reference within the stated bf16
tolerances, a real defect does not (a forgotten mask; one adapter's output or W_V mis-scaled
by 5%, which the logits alone let through), and greedy decodings are compared as documented."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tiny_model
from gpu_reference import (
    FORWARD_TOL,
    GRADIENT_TOL,
    assert_close_to_reference,
    assert_same_greedy,
    compare_forward_internals,
    compare_fusion_runs,
    first_divergence,
    make_fusion_folders,
    mis_scale_adapter,
    mis_scale_value,
    relative_error,
    run_fusion,
)


@pytest.fixture(scope="module")
def masked_fusion(tmp_path_factory):
    """(model folder, adapter+fusion folders, fp32 CPU reference of AdvFusion phase 1)."""
    root = tmp_path_factory.mktemp("gpu-ref")
    build_tiny_model("llama").save_pretrained(root / "model")
    make_fusion_folders(root / "model", root / "saved", "advfusion-masked")
    reference = run_fusion(root / "model", root / "saved", "advfusion-masked", "cpu", bf16=False)
    return root / "model", root / "saved", reference


def test_bf16_autocast_fusion_matches_the_fp32_reference_within_tolerance(masked_fusion):
    model, saved, reference = masked_fusion
    candidate = run_fusion(model, saved, "advfusion-masked", "cpu", bf16=True)
    errors = compare_fusion_runs(candidate, reference)
    assert 0 < errors["logits"] < FORWARD_TOL / 2  # bf16 did round, well inside the bound
    assert 0 < errors["worst_internal"] < FORWARD_TOL / 2
    assert 0 < errors["worst_gradient"] < GRADIENT_TOL


MIS_SCALINGS = {
    "java-adapter-x1.05": (mis_scale_adapter("java", 1.05), "adapter java at"),
    "python-adapter-x0.95": (mis_scale_adapter("python", 0.95), "adapter python at"),
    "W_V-x1.05": (mis_scale_value(1.05), "W_V term at"),
}


@pytest.mark.parametrize("defect", list(MIS_SCALINGS))
def test_a_5_percent_mis_scaling_fails_the_forward_comparison(masked_fusion, defect):
    """The audit's case: 5% on one adapter's output (a slot phase 1 uses) or on W_V moves the
    logits by less than FORWARD_TOL; the comparison where the fusion computes catches it."""
    model, saved, reference = masked_fusion
    tamper, named = MIS_SCALINGS[defect]
    broken = run_fusion(model, saved, "advfusion-masked", "cpu", bf16=True, tamper=tamper)
    assert relative_error(broken.logits, reference.logits) < FORWARD_TOL  # the weak witness
    with pytest.raises(AssertionError, match=rf"{named} layers\.\d\.\w+: relative error"):
        compare_forward_internals(broken, reference)
    with pytest.raises(AssertionError, match="relative error"):
        compare_fusion_runs(broken, reference)


def test_a_fusion_that_forgets_the_mask_fails_the_comparison(masked_fusion):
    model, saved, reference = masked_fusion
    broken = run_fusion(model, saved, "advfusion-masked", "cpu", bf16=True, tamper=unmask_ruby)
    with pytest.raises(AssertionError, match="relative error"):
        compare_fusion_runs(broken, reference)


def unmask_ruby(host):
    host.unmask("ruby")


def test_relative_error_and_its_assertion():
    reference = torch.tensor([3.0, 4.0])
    assert relative_error(reference + torch.tensor([0.0, 0.05]), reference) == pytest.approx(
        0.01, rel=1e-5
    )
    assert relative_error(torch.zeros(2), torch.zeros(2)) == 0.0
    assert assert_close_to_reference(reference * 1.01, reference, 0.02, "x") == pytest.approx(
        0.01, rel=1e-5
    )
    with pytest.raises(AssertionError, match=r"logits: relative error 0.1 > tolerance 0.02"):
        assert_close_to_reference(reference * 1.1, reference, 0.02, "logits")
    with pytest.raises(AssertionError, match="inf or nan"):
        relative_error(torch.tensor([float("nan"), 1.0]), reference)
    with pytest.raises(AssertionError, match="shape"):
        relative_error(torch.zeros(3), reference)


def greedy(scores_per_step: list[list[float]], prompt: list[int]):
    """(tokens (1, len), scores list) of a decoding that picks each step's argmax."""
    scores = [torch.tensor([row]) for row in scores_per_step]
    picked = [int(s.argmax()) for s in scores]
    return torch.tensor([prompt + picked]), scores


def test_greedy_decodings_may_part_only_at_a_near_tie():
    tokens, scores = greedy([[0.0, 5.0, 1.0], [2.0, 0.0, 0.0]], [7, 7])
    assert first_divergence(tokens, tokens) is None
    same = assert_same_greedy(tokens, scores, tokens, scores, 2, score_tol=1e-3, tie_margin=1e-2)
    assert same == 2

    # the reference's second step is a near tie (2.000 vs 1.995): the other pick is allowed
    ref_tokens, ref_scores = greedy([[0.0, 5.0, 1.0], [2.0, 1.995, 0.0]], [7, 7])
    tokens, scores = greedy([[0.0, 5.0, 1.0], [1.995, 2.0, 0.0]], [7, 7])
    assert first_divergence(tokens, ref_tokens) == 3
    kwargs = dict(score_tol=1e-2, tie_margin=1e-2)
    assert assert_same_greedy(tokens, scores, ref_tokens, ref_scores, 2, **kwargs) == 1

    # a clear winner, yet another token: a real difference
    ref_tokens, ref_scores = greedy([[0.0, 5.0, 1.0], [2.0, 0.0, 0.0]], [7, 7])
    with pytest.raises(AssertionError, match="not a near tie"):
        assert_same_greedy(
            tokens, scores, ref_tokens, ref_scores, 2, score_tol=9.0, tie_margin=1e-2
        )
    # the same tokens from scores that drifted apart
    drifted = [s + 0.5 for s in ref_scores]
    with pytest.raises(AssertionError, match="scores differ by 0.5"):
        assert_same_greedy(ref_tokens, drifted, ref_tokens, ref_scores, 2, **kwargs)
