"""Job specs: one validated YAML tree describes a whole run (model, data, method, training,
output), resolved from defaults < preset < spec file < `--set` < command flags.

    spec = resolve_spec(Path("job.yaml"), preset=None, sets=["training.lr=1e-4"],
                        flags={"data.target": "ruby", "method.name": None})
    check_paths(spec)                      # local paths exist (no network, no weights)
    (run_dir / "job.yaml").write_text(dump_spec(spec))
"""

from advfusion_cli.spec.loading import dump_spec, load_spec, parse_spec, resolve_spec
from advfusion_cli.spec.methods import (
    AdapterFusionMethod,
    AdvFusionMethod,
    Budget,
    CompacterMethod,
    FusedAdapterSettings,
    LoraMethod,
    TaskAdapterMethod,
)
from advfusion_cli.spec.paths import ModelLocation, check_paths, model_location
from advfusion_cli.spec.presets import PRESETS, Preset, get_preset
from advfusion_cli.spec.schema import DataSpec, JobSpec, ModelSpec, OutputSpec, TrainingSpec
from advfusion_cli.spec.summary import summary_rows

__all__ = [
    "PRESETS",
    "AdapterFusionMethod",
    "AdvFusionMethod",
    "Budget",
    "CompacterMethod",
    "DataSpec",
    "FusedAdapterSettings",
    "JobSpec",
    "LoraMethod",
    "ModelLocation",
    "ModelSpec",
    "OutputSpec",
    "Preset",
    "TaskAdapterMethod",
    "TrainingSpec",
    "check_paths",
    "dump_spec",
    "get_preset",
    "load_spec",
    "model_location",
    "parse_spec",
    "resolve_spec",
    "summary_rows",
]
