"""README.md model card for an exported run: what it is, its scores, how to load it."""

from __future__ import annotations

import json
from pathlib import Path

from advfusion_cli import __version__


def evaluations(run_path: Path) -> list[dict]:
    """metrics.json of every finished evaluation of the run (`<run>/evals/*/metrics.json`)."""
    found = []
    for path in sorted((run_path / "evals").glob("*/metrics.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("scores"), dict):
            found.append({"name": path.parent.name, **record})
    return found


def _method_note(method: str) -> str:
    if method.startswith("advfusion"):
        return (
            "AdvFusion trained this fusion in two phases (the target adapter masked, then "
            "restored); what it saved is an ordinary AdapterFusion over all the adapters, which "
            "the `adapters` library runs as it is.\n\n"
        )
    return ""


def _metrics_table(records: list[dict]) -> str:
    if not records:
        return "No evaluation of this run was found (`advfusion evaluate --run <run>` adds one).\n"
    lines = ["| evaluation | items | metric | score |", "|---|---|---|---|"]
    for record in records:
        for metric, value in record["scores"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                lines.append(
                    f"| {record['name']} | {record.get('n_items', '-')} | {metric} | {value:.4f} |"
                )
    return "\n".join(lines) + "\n"


def model_card(
    *,
    title: str,
    method: str,
    base: str,
    languages: list[str],
    target: str,
    task: str,
    run_id: str,
    fmt: str,
    load_snippet: str,
    records: list[dict],
    imported_from: str | None = None,
) -> str:
    origin = (
        f"Imported into advfusion from `{imported_from}`, then exported again.\n\n"
        if imported_from
        else ""
    )
    return f"""---
library_name: {"adapters" if fmt == "adapters" else "peft"}
base_model: {base}
tags: [{", ".join(dict.fromkeys(["advfusion", method, *languages]))}]
---

# {title}

{origin}{_method_note(method)}| | |
|---|---|
| method | {method} |
| base model | `{base}` |
| languages | {", ".join(languages)} |
| target language | {target} |
| task | {task} |
| advfusion run | `{run_id}` |
| exported by | advfusion {__version__} |

## Evaluations

{_metrics_table(records)}
## How to load it

```python
{load_snippet}
```
"""


def adapters_snippet(
    base: str, kind: str, names: list[str], interface: bool, safetensors: bool
) -> str:
    plugin = (
        "# This family has no built-in `adapters` class: use the plugin interface saved here.\n"
        "from adapters import AdapterModelInterface\n"
        "import json\n"
        'interface = AdapterModelInterface(**json.load(open("adapter_interface.json"))["interface"])\n'
        "adapters.init(model, interface=interface)\n"
        if interface
        else "adapters.init(model)\n"
    )
    head = (
        "import adapters\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{base}")\n' + plugin
    )
    flag = ", use_safetensors=True" if safetensors else ""
    if kind == "setup":
        return (
            head
            + f'setup, _ = model.load_adapter_setup(".", set_active=True{flag})  # Fuse('
            + ", ".join(names)
            + ")"
        )
    return head + f'name = model.load_adapter(".", set_active=True{flag})  # "{names[0]}"'


def peft_snippet(base: str) -> str:
    return (
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM\n\n"
        f'model = AutoModelForCausalLM.from_pretrained("{base}")\n'
        'model = PeftModel.from_pretrained(model, ".")'
    )
