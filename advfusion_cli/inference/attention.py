"""Which language adapters a fusion relies on: mean fusion attention per layer × language.

The original AdvFusion paper's analysis. Test items are run teacher-forced (prompt + the
reference answer) and the fusion's softmax weights are averaged over the answer's tokens only,
where the model writes the target language; prompt tokens and padding are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from advfusion_cli.data.encoding import Collator, DroppedExample, encode_example
from advfusion_cli.data.records import TaskExample
from advfusion_cli.errors import UserError
from advfusion_cli.inference.precision import inference_autocast


@torch.no_grad()
def fusion_attention(
    loaded,
    examples: Sequence[TaskExample],
    *,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
    autocast: torch.dtype | None = None,
) -> dict:
    """{adapters, places, layers, mean [layer][place][adapter], tokens, items} on `examples`."""
    host = loaded.host
    if host is None or not loaded.is_fusion:
        raise UserError(f"Run '{loaded.method}' has no fusion: fusion attention needs one.")
    data = loaded.spec.data
    features = []
    for example in examples:
        try:
            features.append(
                encode_example(
                    loaded.tokenizer,
                    example,
                    max_prompt_tokens=data.max_prompt_tokens,
                    max_target_tokens=data.max_target_tokens,
                    max_total_tokens=data.max_total_tokens,
                )
            )
        except DroppedExample:
            continue
    if not features:
        raise UserError("No test item fits the run's token budgets; fusion attention is empty.")
    if on_batch is not None and len(features) < len(examples):
        on_batch(len(examples) - len(features))
    collate = Collator.for_tokenizer(loaded.tokenizer, padding_side="right")
    model = loaded.model
    device = next(model.parameters()).device
    model.eval()
    few_logits = {"logits_to_keep": 1} if _accepts_logits_to_keep(model) else {}
    with host.record_fusion_attention() as record:
        for start in range(0, len(features), batch_size):
            chunk = features[start : start + batch_size]
            batch = collate(chunk)
            record.token_mask = batch["completion_mask"].to(device)  # (B, T): answer tokens
            with inference_autocast(autocast, device.type):
                # One teacher-forced pass: a KV cache would only hold (layers x B x T x H)
                # keys and values that nothing reads, and only the fusion layers' alphas are
                # wanted, so the logits are cut to the last position where the model allows.
                model(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    use_cache=False,
                    **few_logits,
                )
            if on_batch is not None:
                on_batch(len(chunk))
    mean = record.mean()  # (layers, places, N)
    return {
        "adapters": list(record.adapter_names),
        "places": list(record.place_names),
        "layers": int(mean.shape[0]),
        "mean": mean.tolist(),
        "tokens": record.token_counts().tolist(),
        "items": len(features),
        "on": "test items, teacher-forced; mean over the reference answer's tokens",
    }


def _accepts_logits_to_keep(model) -> bool:
    """Whether the transformers model's forward takes `logits_to_keep` (most decoders do)."""
    import inspect

    from advfusion_cli.workflows.lm_loss import unwrap_model

    try:
        return "logits_to_keep" in inspect.signature(unwrap_model(model).forward).parameters
    except (TypeError, ValueError):
        return False
