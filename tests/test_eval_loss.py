"""The eval loss that decides which checkpoint is kept: the mean next-token loss over the
completion's tokens only (prompt and padding left out), written out by hand on a fixture and
compared with `causal_lm_loss(train=False)` and with the trainer's token-weighted evaluation."""

from __future__ import annotations

import pytest
import torch
from accelerate import Accelerator
from transformers import LlamaConfig, LlamaForCausalLM

from advfusion_cli.data.encoding import Collator
from advfusion_cli.workflows import trainer as T
from advfusion_cli.workflows.execute import causal_lm_loss
from advfusion_cli.workflows.runs import RunDir

PAD = 0


def _feature(prompt: list[int], target: list[int]) -> dict:
    """encode_example's layout with loss_on="all": labels on prompt and target alike."""
    return {
        "input_ids": prompt + target,
        "labels": prompt + target,
        "attention_mask": [1] * (len(prompt) + len(target)),
        "completion_mask": [0] * len(prompt) + [1] * len(target),
        "prompt_length": len(prompt),
    }


# Different prompt and target lengths, so padding and the prompt/target border both matter.
FEATURES = [
    _feature([5, 9, 3, 7, 2], [11, 4, 6]),
    _feature([8, 1], [13, 12, 10, 14, 3]),
]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=16,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    return LlamaForCausalLM(config).eval()


def _completion_nll(model, feature: dict) -> list[float]:
    """-log p(token | everything before it) for each target token, one example at a time."""
    ids = torch.tensor([feature["input_ids"]])  # (1, T)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)  # (T, V)
    start = feature["prompt_length"]
    return [
        -float(log_probs[position - 1, ids[0, position]]) for position in range(start, ids.shape[1])
    ]


def test_eval_loss_is_the_completion_only_mean(model):
    batch = Collator(PAD)(FEATURES)  # right-padded (2, 7)
    expected = [nll for feature in FEATURES for nll in _completion_nll(model, feature)]
    with torch.no_grad():
        loss, counted = causal_lm_loss(model, batch, False)
    assert int(counted) == len(expected) == 3 + 5
    assert float(loss) == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    with torch.no_grad():
        train_loss, train_counted = causal_lm_loss(model, batch, True)
    assert int(train_counted) == (5 + 3 - 1) + (2 + 5 - 1)  # the prompt counts in training
    assert float(train_loss) != pytest.approx(float(loss), rel=1e-3)


def test_trainer_evaluation_weights_batches_by_completion_tokens(model, tmp_path):
    """Batches of one: the mean over all completion tokens, not the mean of batch means."""
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    trainable = {"w": torch.nn.Parameter(torch.zeros(1))}
    loop = T.Trainer(Accelerator(cpu=True), model, trainable, causal_lm_loss, Collator(PAD), run)
    per_token = [nll for feature in FEATURES for nll in _completion_nll(model, feature)]
    assert loop.evaluate(FEATURES, batch_size=1) == pytest.approx(
        sum(per_token) / len(per_token), rel=1e-5
    )
