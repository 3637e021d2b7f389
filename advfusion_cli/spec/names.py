"""Registries of the names a job spec may use: methods, tasks, languages, presets' subsets.

Each registry maps user spellings (aliases, any case, `_` for `-`) to one canonical id, and
an unknown name fails with "Unknown X 'y'. Did you mean 'z'? Available: ...".
Languages come from the data layer's table (`advfusion_cli/data/languages.py`), so a spec
accepts every spelling the datasets use.
"""

from __future__ import annotations

from advfusion_cli.data import languages as data_languages
from advfusion_cli.errors import UserError, did_you_mean, unknown_name_error

# Canonical method names, in the order they are documented.
METHODS: dict[str, str] = {
    "lora": "LoRA (peft) on the attention projections; one set per language.",
    "task-adapter": "Bottleneck adapter after each MLP (Pfeiffer placement), reduction 16, ReLU.",
    "compacter": "Compacter: PHM bottleneck adapters after attention and MLP, reduction 32, GELU.",
    "adapterfusion": "AdapterFusion over frozen language adapters, trained on the target language.",
    "advfusion": "AdvFusion: fusion trained with the target adapter masked, then restored.",
}

# Alias -> (canonical name, settings the alias implies).
METHOD_ALIASES: dict[str, tuple[str, dict[str, str]]] = {
    "advfusion-compacter": ("advfusion", {"adapter_kind": "compacter"}),
    "adapterfusion-compacter": ("adapterfusion", {"adapter_kind": "compacter"}),
    "adapter-fusion": ("adapterfusion", {}),
    "adv-fusion": ("advfusion", {}),
    "adapter": ("task-adapter", {}),
    "bottleneck": ("task-adapter", {}),
}

# Aliases shown in error messages and docs (the others are accepted silently).
LISTED_METHOD_ALIASES: tuple[str, ...] = ("advfusion-compacter", "adapterfusion-compacter")

TASKS: dict[str, str] = {
    "commit-message": "Write the subject line of a commit from its diff (CommitPackFT).",
    "code-generation": "Write a program from a problem statement (xCodeEval program synthesis).",
    "code-translation": "Translate a program into the target language (CodeTransOcean).",
    "custom": "Your own records: a prompt template over their fields -> a target (data.custom).",
}

TASK_ALIASES: dict[str, str] = {
    "commit-messages": "commit-message",
    "commit": "commit-message",
    "code-gen": "code-generation",
    "program-synthesis": "code-generation",
    "code-trans": "code-translation",
    "translation": "code-translation",
}

TRANSLATION_SUBSETS: tuple[str, ...] = ("MultilingualTrans", "NicheTrans", "LLMTrans")

# The languages the embedded testbed generates; ruby is its low-resource target.
TESTBED_LANGUAGES: tuple[str, ...] = ("python", "javascript", "java", "go", "ruby")
TESTBED_TARGET = "ruby"

# The string alias the workflows resolve to the shipped tiny model.
EMBEDDED_MODEL = "advfusion/tiny-code"


def _key(name: str) -> str:
    """Lower case, trimmed, `_` and spaces read as `-` (YAML users write both)."""
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def canonical_method(name: str) -> tuple[str, dict[str, str]]:
    """(canonical method name, settings implied by an alias); UserError for unknown names."""
    key = _key(name)
    if key in METHODS:
        return key, {}
    if key in METHOD_ALIASES:
        canonical, implied = METHOD_ALIASES[key]
        return canonical, dict(implied)
    close = did_you_mean(key, [*METHODS, *METHOD_ALIASES])
    listed = [*METHODS, *LISTED_METHOD_ALIASES]
    raise UserError(f"Unknown method '{name}'.{close} Available: {', '.join(listed)}.")


def canonical_task(name: str) -> str:
    key = _key(name)
    if key in TASKS:
        return key
    if key in TASK_ALIASES:
        return TASK_ALIASES[key]
    raise unknown_name_error("task", name, TASKS)


def canonical_language(name: str) -> str:
    """`js` -> `javascript`, `C++` -> `cpp`, `Ruby` -> `ruby`; UserError for unknown names.

    The data layer's table is the single source of language spellings."""
    return data_languages.canonical_language(name)


def canonical_subset(name: str) -> str:
    for subset in TRANSLATION_SUBSETS:
        if subset.lower() == name.strip().lower():
            return subset
    raise unknown_name_error("translation subset", name, TRANSLATION_SUBSETS)


def lowercase_first(err: UserError) -> str:
    """The message of a name error, lower-cased first letter (it follows a key path)."""
    text = str(err)
    return text[:1].lower() + text[1:]
