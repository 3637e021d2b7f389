"""Batched generation as the authors decode: left padding, KV cache, greedy, 512 new tokens.

Only the new tokens are kept. Sampling (n, temperature, top-p, top-k) exists for pass@k.
Each task has a stop rule applied to the decoded text (the commit subject ends at the first
newline; a translation ends where the model starts a new `### Code written in` block), and
the same strings stop a row early during generation so it does not burn tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from advfusion_cli.data.encoding import Collator, DroppedExample, encode_prompt_for_generation
from advfusion_cli.data.records import TaskExample
from advfusion_cli.errors import UserError
from advfusion_cli.inference.sampling import expand_rows, row_seeds, sampler_processors

AUTHORS_MAX_NEW_TOKENS = 512


@dataclass(frozen=True)
class StopRule:
    """Where a completion ends, beyond EOS: the text is cut before the first stop string."""

    stop_strings: tuple[str, ...] = ()
    description: str = "EOS"

    def apply(self, text: str) -> str:
        positions = [text.find(stop) for stop in self.stop_strings]
        found = [p for p in positions if p != -1]
        if found:
            return text[: min(found)]  # the stop string starts with the answer's end
        # Targets are trained as `target + "\n" + EOS`: that one newline is not the answer's.
        return text[:-1] if text.endswith("\n") else text


STOP_RULES: dict[str, StopRule] = {
    "commit-message": StopRule(("\n",), "first newline (the subject line)"),
    "code-translation": StopRule(("\n### Code written in",), "EOS or a new '### Code written in'"),
    "code-generation": StopRule((), "EOS"),
}


def stop_rule_for(task: str) -> StopRule:
    return STOP_RULES.get(task, StopRule())


@dataclass(frozen=True)
class DecodingSettings:
    """Greedy by default (the authors); `n > 1` or a temperature turns sampling on."""

    max_new_tokens: int = AUTHORS_MAX_NEW_TOKENS
    n: int = 1
    temperature: float | None = None  # None: greedy when n == 1, else 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}.")
        if self.n < 1:
            raise UserError(f"--n must be >= 1, got {self.n}.")
        if self.temperature is not None and self.temperature <= 0:
            raise UserError(
                f"--temperature must be > 0, got {self.temperature} (leave it out for greedy)."
            )
        if not 0 < self.top_p <= 1:
            raise UserError(f"--top-p must be in (0, 1], got {self.top_p}.")
        if self.top_k < 0:
            raise UserError(f"--top-k must be >= 0, got {self.top_k}.")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if self.n > 1 and self.temperature is None:
            object.__setattr__(self, "temperature", 1.0)

    @property
    def sampling(self) -> bool:
        return self.temperature is not None

    @property
    def label(self) -> str:
        """Short description for folder names and tables: `greedy` or `n10-t0.3-p0.9-k50`."""
        if not self.sampling:
            return f"greedy-{self.max_new_tokens}"
        return (
            f"n{self.n}-t{self.temperature:g}-p{self.top_p:g}-k{self.top_k}-{self.max_new_tokens}"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "mode": "sampling" if self.sampling else "greedy"}


@dataclass
class Completion:
    """The candidates for one prompt (n of them), after the stop rule."""

    texts: list[str]
    prompt_tokens: int = 0
    new_tokens: list[int] = field(default_factory=list)  # per candidate, before the stop rule
    truncated_prompt: bool = False
    dropped: str | None = None  # why no generation happened (the prompt cannot fit)


def _generation_config(settings: DecodingSettings, tokenizer):
    from transformers import GenerationConfig

    # Always the greedy loop: sampling is a logits processor with one random stream per
    # candidate (inference/sampling.py), and the n candidates are n copies of the prompt row.
    return GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        num_return_sequences=1,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=True,
        num_beams=1,
        do_sample=False,
    )


class StopOnStrings:
    """Stops a row once its new text contains a stop string (checked on a short tail window).

    A stop string of k characters spans at most k tokens, so decoding the last k + 2 new
    tokens of each row per step finds it without re-decoding the whole completion.
    """

    def __init__(self, tokenizer, stop_strings: tuple[str, ...], prompt_length: int):
        self.tokenizer = tokenizer
        self.stop_strings = stop_strings
        self.prompt_length = prompt_length
        self.window = max(len(s) for s in stop_strings) + 2

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        tails = input_ids[:, self.prompt_length :][:, -self.window :]  # (B, <= window)
        texts = self.tokenizer.batch_decode(tails, skip_special_tokens=True)
        done = [any(stop in text for stop in self.stop_strings) for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # (B,)


def _stopping_criteria(tokenizer, rule: StopRule, prompt_length: int):
    if not rule.stop_strings:
        return None
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _Criteria(StopOnStrings, StoppingCriteria):
        pass

    return StoppingCriteriaList([_Criteria(tokenizer, rule.stop_strings, prompt_length)])


def model_max_positions(model) -> int | None:
    config = getattr(model, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def encode_prompts(
    tokenizer,
    examples: Sequence[TaskExample],
    max_prompt_tokens: int,
    max_new_tokens: int,
    max_positions: int | None,
) -> list[dict | DroppedExample]:
    """Prompt features (cut as in training, leaving room for the new tokens) or why not."""
    if max_positions is not None and max_positions - max_new_tokens < 1:
        raise UserError(
            f"--max-new-tokens {max_new_tokens} leaves no room for a prompt in a model with "
            f"{max_positions} positions; lower it."
        )
    features: list[dict | DroppedExample] = []
    for example in examples:
        try:
            features.append(
                encode_prompt_for_generation(
                    tokenizer,
                    example,
                    max_prompt_tokens=max_prompt_tokens,
                    max_total_tokens=max_positions,
                    max_new_tokens=max_new_tokens,
                )
            )
        except DroppedExample as dropped:
            features.append(dropped)
    return features


@dataclass
class GenerationStats:
    """How generation went: out-of-memory back-offs and the batch size it ended with."""

    batch_size: int
    oom_backoffs: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def is_out_of_memory(error: BaseException) -> bool:
    """A CUDA out-of-memory error (torch.OutOfMemoryError, also raised as torch.cuda's)."""
    return isinstance(error, torch.OutOfMemoryError)


def generation_order(features: Sequence[dict | DroppedExample]) -> list[int]:
    """Indices of the prompts that fit, longest first (ties keep their order): the order
    batches are cut from. Dropped prompts are not generated."""
    return sorted(
        (i for i, f in enumerate(features) if not isinstance(f, DroppedExample)),
        key=lambda i: -len(features[i]["input_ids"]),
    )


@torch.no_grad()
def generate_completions(
    model,
    tokenizer,
    examples: Sequence[TaskExample],
    settings: DecodingSettings,
    rule: StopRule,
    *,
    max_prompt_tokens: int = 4096,
    on_batch: Callable[[int], None] | None = None,
    done: Mapping[int, Completion] | None = None,
    on_results: Callable[[list[tuple[int, Completion]]], None] | None = None,
    autocast: torch.dtype | None = None,
    stats: GenerationStats | None = None,
    stream_keys: Sequence[str] | None = None,
) -> list[Completion]:
    """One Completion per example, in the examples' order.

    Prompts are batched longest first (less padding; greedy results do not depend on the
    batch), left-padded, and decoded with the KV cache. `on_batch(k)` reports k more
    examples done. A prompt that cannot fit even after cutting its inner text gets an empty
    completion with `dropped` set, so every method is scored on the same items.

    `done` holds completions from an interrupted evaluation (by example index): those rows
    are skipped and the rest are batched exactly as an unbroken run batches them.
    Sampled candidates come from one random stream per (seed, item id, candidate)
    (inference/sampling.py), so they do not depend on the batch, the process or a resume;
    `stream_keys` replaces the item ids as the streams' keys (one per example).
    `on_results` receives each finished sub-batch as [(index, completion)], for journaling.
    `autocast` runs the forward passes under that dtype (CUDA bf16; None = as loaded). On
    CUDA out-of-memory the batch size halves and generation continues (`stats` counts it).
    """
    from advfusion_cli.inference.precision import inference_autocast

    done = dict(done or {})
    keys = list(stream_keys) if stream_keys is not None else [e.id for e in examples]
    stats = stats if stats is not None else GenerationStats(settings.batch_size)
    max_positions = model_max_positions(model)
    features = encode_prompts(
        tokenizer, examples, max_prompt_tokens, settings.max_new_tokens, max_positions
    )
    collate = Collator.for_tokenizer(tokenizer, padding_side="left")
    config = _generation_config(settings, tokenizer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()

    results: list[Completion | None] = [None] * len(examples)
    for index, feature in enumerate(features):
        if isinstance(feature, DroppedExample):
            results[index] = Completion([""] * settings.n, dropped=feature.reason)
    order = generation_order(features)
    for index in order:
        if index in done:
            results[index] = done[index]
    reported = (len(examples) - len(order)) + sum(1 for i in order if i in done)
    if on_batch is not None and reported:
        on_batch(reported)

    def run(indices: list[int]) -> None:
        batch = collate([features[i] for i in indices])
        input_ids = expand_rows(batch["input_ids"], settings.n).to(device)  # (B * n, T) left-padded
        attention_mask = expand_rows(batch["attention_mask"], settings.n).to(device)
        processors = None
        if settings.sampling:  # candidate j of item X: its own stream, whatever the batch
            seeds = row_seeds(settings.seed, [keys[i] for i in indices], settings.n)
            processors = sampler_processors(
                seeds, settings.temperature, settings.top_k, settings.top_p
            )
        with inference_autocast(autocast, device.type):
            generated = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                generation_config=config,
                logits_processor=processors,
                stopping_criteria=_stopping_criteria(tokenizer, rule, input_ids.shape[1]),
            )  # (B * n, T + new)
        new_tokens = generated[:, input_ids.shape[1] :].cpu()  # (B * n, new)
        lengths = _lengths_before_stop(new_tokens, tokenizer)
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        finished = []
        for row, i in enumerate(indices):
            span = slice(row * settings.n, (row + 1) * settings.n)
            feature = features[i]
            results[i] = Completion(
                texts=[rule.apply(text) for text in texts[span]],
                prompt_tokens=feature["prompt_length"],
                new_tokens=lengths[span],
                truncated_prompt=bool(feature["truncated"]),
            )
            finished.append((i, results[i]))
        if on_results is not None:
            on_results(finished)
        if on_batch is not None:
            on_batch(len(indices))

    # The planned batches are fixed by the full order, whatever was done before or fails now:
    # a resumed run regenerates exactly the rows an unbroken run generates in each batch.
    for start in range(0, len(order), settings.batch_size):
        planned = order[start : start + settings.batch_size]
        pending = [i for i in planned if i not in done]
        while pending:
            chunk = pending[: stats.batch_size]
            try:
                run(chunk)
            except Exception as error:
                if not is_out_of_memory(error):
                    raise
                if stats.batch_size == 1:
                    raise UserError(
                        "Out of GPU memory generating a single prompt "
                        f"({len(features[chunk[0]]['input_ids'])} prompt tokens, "
                        f"--max-new-tokens {settings.max_new_tokens}); lower --max-new-tokens "
                        "or data.max_prompt_tokens."
                    ) from error
                stats.batch_size = max(1, stats.batch_size // 2)
                stats.oom_backoffs += 1
            else:
                pending = pending[len(chunk) :]
                continue
            _release_cached_memory()  # outside the handler: the failed step's frames are gone
    model.train(was_training)
    return [r for r in results if r is not None]


def _release_cached_memory() -> None:
    import gc

    gc.collect()  # the failed step's tensors are garbage once the exception is handled
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _lengths_before_stop(new_tokens: torch.Tensor, tokenizer) -> list[int]:
    """Tokens generated per row, up to and including EOS (padding after it not counted)."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    lengths = []
    for row in new_tokens.tolist():
        count = len(row)
        for position, token in enumerate(row):
            if token == eos:
                count = position + 1
                break
        else:
            while count and pad is not None and row[count - 1] == pad and pad != eos:
                count -= 1
        lengths.append(count)
    return lengths
