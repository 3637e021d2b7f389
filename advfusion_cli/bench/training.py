"""One configuration's training step on the shared base, its timing rounds and its peak memory.

A step is what training does: forward with labels, the configuration's extra loss (fusion's
W_V regularization), backward, AdamW on exactly the trainable parameters, zero_grad.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from advfusion_cli.bench.configurations import Configuration
from advfusion_cli.bench.measure import StepTimes, memory_probe, time_calls
from advfusion_cli.bench.shapes import weight_bytes

MIB = 1024**2
Progress = Callable[[str], None]


class TrainingStep:
    """A callable training step of one configuration, set up on `model` until `close()`."""

    def __init__(
        self,
        model: nn.Module,
        ids: torch.Tensor,
        configuration: Configuration,
        *,
        adapter_dtype: torch.dtype,
        autocast: bool,
        seed: int,
    ) -> None:
        torch.manual_seed(seed)  # every set-up draws the same adapter weights
        self._prepared = configuration.prepare(model, adapter_dtype)
        parameters = self._prepared.parameters
        self.trainable = sum(p.numel() for p in parameters)
        self._optimizer = torch.optim.AdamW(parameters, lr=1e-4) if parameters else None
        self._ids = ids  # (batch, seq): inputs and labels
        self._autocast = autocast

    def __call__(self) -> None:
        ids = self._ids
        autocast = (
            torch.autocast(ids.device.type, dtype=torch.bfloat16)
            if self._autocast
            else contextlib.nullcontext()
        )
        with autocast:
            loss = self._prepared.model(input_ids=ids, labels=ids).loss
            if self._prepared.extra_loss is not None:
                loss = loss + self._prepared.extra_loss()
        loss.backward()
        if self._optimizer is not None:
            self._optimizer.step()
            self._optimizer.zero_grad(set_to_none=True)

    def close(self) -> None:
        """Remove the configuration from the model and drop the optimizer state."""
        self._prepared.teardown()
        self._prepared = None
        self._optimizer = None


@contextlib.contextmanager
def training_step(model, ids, configuration, **options) -> Iterator[TrainingStep]:
    step = TrainingStep(model, ids, configuration, **options)
    try:
        yield step
    finally:
        step.close()


def attempt(failures: dict[str, str], configuration: Configuration, work: Callable[[], None]):
    """Run `work`; a failing configuration is recorded in `failures` and skipped from then on.

    The floor is what every ratio divides by, so its failure stops the run.
    """
    if configuration.name in failures:
        return
    try:
        work()
    except Exception as exc:
        if configuration.method == "base":
            raise
        failures[configuration.name] = f"{type(exc).__name__}: {exc}".splitlines()[0]


def timed_rounds(
    model: nn.Module,
    ids: torch.Tensor,
    configurations: list[Configuration],
    *,
    rounds: int,
    steps: int,
    warmup: int,
    sync: Callable[[], None],
    say: Progress,
    failures: dict[str, str],
    **options,
) -> dict[str, dict]:
    """Step times of every configuration; forward order on even rounds, reverse on odd ones."""
    results = {c.name: {"times": StepTimes(), "trainable": 0} for c in configurations}

    def run(configuration: Configuration) -> None:
        with training_step(model, ids, configuration, **options) as step:
            for _ in range(warmup):
                step()
            results[configuration.name]["times"].extend(time_calls(step, steps, sync))
            results[configuration.name]["trainable"] = step.trainable

    for round_index in range(rounds):
        order = configurations if round_index % 2 == 0 else configurations[::-1]
        for configuration in order:
            say(f"round {round_index + 1}/{rounds}: {configuration.label}")
            attempt(failures, configuration, lambda c=configuration: run(c))
    return results


def memory_pass(
    model: nn.Module,
    ids: torch.Tensor,
    configurations: list[Configuration],
    *,
    sync: Callable[[], None],
    say: Progress,
    failures: dict[str, str],
    **options,
) -> dict:
    """Peak memory of one training step per configuration, base weights included.

    peak = base weights + (high-water mark during the step - memory before set-up), so what the
    process holds for other reasons (libraries, the interpreter) is left out. Run it before any
    timing (see `CpuMemoryProbe`); one untimed step of every configuration first lets one-time
    allocations (lazy imports, kernel set-up) happen outside the measurement.
    """
    probe = memory_probe(ids.device)
    if probe is None:
        return {}
    probe.strict()
    try:
        say("memory: warming up every configuration")

        def warm_up(configuration: Configuration) -> None:
            with training_step(model, ids, configuration, **options) as step:
                step()

        def measure(configuration: Configuration) -> None:
            rows[configuration.name] = _step_memory(
                model, ids, configuration, probe, base_bytes, sync, options
            )

        for configuration in configurations:
            attempt(failures, configuration, lambda c=configuration: warm_up(c))
        base_bytes = weight_bytes(model)
        rows = {}
        for configuration in configurations:
            say(f"memory: {configuration.label}")
            attempt(failures, configuration, lambda c=configuration: measure(c))
    finally:
        probe.relax()
        probe.settle()
    return {"probe": probe.kind, "base_weights_mb": base_bytes / MIB, "rows": rows}


def _step_memory(model, ids, configuration, probe, base_bytes, sync, options) -> dict:
    probe.settle()  # the previous configuration's tensors are gone once this returns
    before_setup = probe.current()
    with training_step(model, ids, configuration, **options) as step:
        step()  # the first step allocates the optimizer state
        sync()
        probe.settle()
        resting = probe.current()
        probe.reset_peak()
        step()
        sync()
        peak = probe.peak()
    return {
        "peak_mb": (base_bytes + peak - before_setup) / MIB,
        "state_mb": (resting - before_setup) / MIB,  # adapters, stacks, optimizer state
        "step_mb": (peak - resting) / MIB,  # activations, gradients, temporaries
    }
