"""Run every configuration side by side in one process and collect ratios to the frozen base.

Timing runs in rounds; each round runs every configuration (set up on the shared base, warmed
up, timed, removed), in forward order on even rounds and reverse order on odd ones, so slow
drift of the machine (other processes, thermal state) falls on all configurations alike.
Peak memory is measured in a separate pass before any timing (see `training.memory_pass`).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch

from advfusion_cli.bench.configurations import FLOORS, training_configurations
from advfusion_cli.bench.generation import GenerationSettings, generation_bench
from advfusion_cli.bench.measure import synchronizer
from advfusion_cli.bench.real_shapes import real_shape_table
from advfusion_cli.bench.report import goal_checks
from advfusion_cli.bench.shapes import QUANTIZATIONS, BenchShapes, build_base_model, random_tokens
from advfusion_cli.bench.training import memory_pass, timed_rounds
from advfusion_cli.engine import AdapterConfig
from advfusion_cli.errors import UserError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Progress = Callable[[str], None]


@dataclass(frozen=True)
class BenchSettings:
    shapes: BenchShapes = field(default_factory=BenchShapes)
    n_adapters: tuple[int, ...] = (3, 6, 12)
    threads: int = 1
    steps: int = 5  # timed steps per configuration per round
    warmup: int = 2  # untimed steps after each set-up
    rounds: int = 3
    quantization: str = "none"
    dtype: str = "float32"  # base weights (4-bit: the compute dtype)
    adapter_dtype: str = "float32"  # trained modules' master weights, as in the workflows
    autocast: bool = False  # bf16 autocast of the forward (CUDA training does this)
    device: str = "cpu"
    query_rank: int | None = 64  # the low-rank query/key variant; None: not measured
    generation: GenerationSettings | None = field(default_factory=GenerationSettings)
    memory: bool = True
    floor: str = "first-place"  # where the frozen base's backward starts (configurations.FLOORS)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.n_adapters or any(n < 1 for n in self.n_adapters):
            raise UserError(f"--n-adapters needs positive counts, got {list(self.n_adapters)}.")
        for name in ("threads", "steps", "rounds"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.floor not in FLOORS:
            raise UserError(f"Unknown --floor '{self.floor}'. Available: {', '.join(FLOORS)}.")
        if self.warmup < 0:
            raise UserError(f"--warmup must be >= 0, got {self.warmup}.")
        if self.quantization not in QUANTIZATIONS:
            raise UserError(
                f"Unknown quantization '{self.quantization}'. Available: {', '.join(QUANTIZATIONS)}."
            )
        for name in ("dtype", "adapter_dtype"):
            if getattr(self, name) not in DTYPES:
                raise UserError(
                    f"Unknown --{name.replace('_', '-')} '{getattr(self, name)}'. "
                    f"Available: {', '.join(DTYPES)}."
                )
        if self.query_rank is not None and not 1 <= self.query_rank <= self.shapes.hidden:
            raise UserError(
                f"--query-rank must be between 1 and --hidden {self.shapes.hidden}, "
                f"got {self.query_rank}."
            )
        compacter = AdapterConfig.compacter()
        bottleneck = self.shapes.hidden // compacter.reduction_factor
        if (
            bottleneck < 1
            or bottleneck % compacter.phm_dim
            or self.shapes.hidden % compacter.phm_dim
        ):
            raise UserError(
                f"--hidden {self.shapes.hidden} does not fit the Compacter row (bottleneck "
                f"hidden/{compacter.reduction_factor} split into {compacter.phm_dim} PHM blocks): "
                "use a multiple of 128."
            )
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise UserError(f"Unknown --device '{self.device}'. Use cpu, cuda or cuda:N.")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {self.device}: no CUDA device is available here.")

    @property
    def reference_n(self) -> int:
        """The N of the low-rank query variant and the fused generation: 6 if measured."""
        return 6 if 6 in self.n_adapters else max(self.n_adapters)


def run_bench(settings: BenchSettings, progress: Progress | None = None) -> dict:
    """Measure every configuration; returns the JSON-ready results (see docs/performance.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        return _run(settings, progress or (lambda message: None))
    finally:
        torch.set_num_threads(threads)  # callers (tests, notebooks) keep their own setting


def _run(settings: BenchSettings, say: Progress) -> dict:
    device = torch.device(settings.device)
    sync = synchronizer(device)
    shapes = settings.shapes
    new_tokens = settings.generation.new_tokens if settings.generation else 0
    prompt_tokens = settings.generation.prompt_tokens if settings.generation else 0
    max_positions = max(shapes.seq, prompt_tokens + new_tokens)
    say(f"building a random Llama {shapes.to_dict()} ({settings.quantization}, {settings.dtype})")
    model = build_base_model(
        shapes,
        max_positions=max_positions,
        dtype=DTYPES[settings.dtype],
        device=device,
        quantization=settings.quantization,
        seed=settings.seed,
    )
    ids = random_tokens(shapes, device, settings.seed)
    configurations = training_configurations(
        list(settings.n_adapters), settings.query_rank, settings.reference_n, settings.floor
    )
    load_before = _load_average()
    failures: dict[str, str] = {}  # configuration name -> first line of its error
    options = {
        "adapter_dtype": DTYPES[settings.adapter_dtype],
        "autocast": settings.autocast,
        "seed": settings.seed,
        "failures": failures,
    }
    memory = (
        memory_pass(model, ids, configurations, sync=sync, say=say, **options)
        if settings.memory
        else {}
    )
    times = timed_rounds(
        model,
        ids,
        configurations,
        rounds=settings.rounds,
        steps=settings.steps,
        warmup=settings.warmup,
        sync=sync,
        say=say,
        **options,
    )
    generation = None
    if settings.generation is not None:
        say("generation: batched vs one prompt at a time, with and without fusion")
        generator = torch.Generator().manual_seed(settings.seed + 1)
        prompt_ids = torch.randint(
            3,
            shapes.vocab,
            (settings.generation.prompts, settings.generation.prompt_tokens),
            generator=generator,
        ).to(device)
        generation = generation_bench(
            model,
            prompt_ids,
            GenerationSettings(
                **{**asdict(settings.generation), "fusion_adapters": settings.reference_n}
            ),
            rounds=settings.rounds,
            adapter_dtype=DTYPES[settings.adapter_dtype],
            sync=sync,
            seed=settings.seed,
        )
    rows = _training_rows(configurations, times, memory, failures, shapes.tokens_per_step)
    results = {
        "environment": _environment(settings, device, model, load_before),
        "settings": _settings_dict(settings),
        "training": rows,
        "memory_probe": memory.get("probe"),
        "generation": generation,
        "real_shapes": real_shape_table(settings.query_rank),
    }
    results["goals"] = goal_checks(results)
    return results


def _training_rows(configurations, times, memory, failures, tokens_per_step) -> list[dict]:
    floor = times["base"]["times"].summary(tokens_per_step)
    memory_rows = memory.get("rows", {})
    adapter_peak = memory_rows.get("task-adapter", {}).get("peak_mb")
    rows = []
    for configuration in configurations:
        row = {
            "name": configuration.name,
            "label": configuration.label,
            "method": configuration.method,
            "n_adapters": configuration.n_adapters,
            "query_rank": configuration.query_rank,
        }
        if configuration.name in failures:
            rows.append({**row, "error": failures[configuration.name]})
            continue
        summary = times[configuration.name]["times"].summary(tokens_per_step)
        row |= {
            "trainable_parameters": times[configuration.name]["trainable"],
            **summary,
            "ratio": floor["median_s"] / summary["median_s"],
            "ratio_min": floor["min_s"] / summary["min_s"],
            "ratio_cpu": floor["cpu_median_s"] / summary["cpu_median_s"],
        }
        mem = memory_rows.get(configuration.name)
        if mem is not None:
            row.update(mem)
            if adapter_peak:
                row["memory_vs_adapter"] = mem["peak_mb"] / adapter_peak
        rows.append(row)
    return rows


def _load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _environment(settings, device, model, load_before) -> dict:
    import peft
    import transformers

    from advfusion_cli import __version__

    return {
        "advfusion": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "device": device.type,
        "device_name": _device_name(device),
        "cpu_count": os.cpu_count(),
        "threads": settings.threads,
        "attention": getattr(model.config, "_attn_implementation", None),
        "load_average_before": load_before,
        "load_average_after": _load_average(),
    }


def _settings_dict(settings: BenchSettings) -> dict:
    data = asdict(settings)
    data["n_adapters"] = list(settings.n_adapters)
    data["tokens_per_step"] = settings.shapes.tokens_per_step
    return data
