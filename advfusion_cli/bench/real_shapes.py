"""Fusion trainable parameters and optimizer memory at the real models' shapes (arithmetic only).

A fusion layer per place holds W_Q, W_K (h x r, bias r each) and W_V (h x h, no bias):
h^2 + 2hr + 2r parameters, i.e. 3h^2 + 2h at the paper's full rank r = h. Training keeps fp32
master weights, their gradients and AdamW's two moments: 16 bytes per parameter.
"""

from __future__ import annotations

# (name, hidden size, decoder layers) of the base models the paper fine-tunes.
REAL_MODELS: tuple[tuple[str, int, int], ...] = (
    ("CodeLlama-7B", 4096, 32),
    ("DeepSeek-Coder-1.3B", 2048, 24),
    ("Qwen2.5-Coder-1.5B", 1536, 28),
    ("Qwen2.5-Coder-3B", 2048, 36),
)
PLACES_PER_LAYER = {"task-adapter": 1, "compacter": 2}
BYTES_PER_PARAMETER = {"weights": 4, "gradients": 4, "adamw_moments": 8}  # fp32 throughout
GIB = 1024**3


def fusion_parameters_per_place(hidden: int, query_rank: int | None = None) -> int:
    """W_V h*h + (W_Q, W_K) 2*(h*r + r); r = h (the paper) gives 3h^2 + 2h."""
    rank = query_rank or hidden
    return hidden * hidden + 2 * (hidden * rank + rank)


def fusion_memory(
    hidden: int, layers: int, adapter_kind: str = "task-adapter", query_rank: int | None = None
) -> dict:
    """Trainable parameters and training-state bytes of one fusion over a whole model."""
    places = layers * PLACES_PER_LAYER[adapter_kind]
    parameters = fusion_parameters_per_place(hidden, query_rank) * places
    memory = {f"{part}_gib": parameters * size / GIB for part, size in BYTES_PER_PARAMETER.items()}
    return {
        "places": places,
        "trainable_parameters": parameters,
        **memory,
        "training_state_gib": parameters * sum(BYTES_PER_PARAMETER.values()) / GIB,
    }


def real_shape_table(query_rank: int | None) -> list[dict]:
    """One row per real model and adapter kind, full-rank and (optionally) low-rank query/key."""
    rows = []
    for name, hidden, layers in REAL_MODELS:
        for kind in PLACES_PER_LAYER:
            ranks = [None, query_rank] if query_rank and query_rank < hidden else [None]
            for rank in ranks:
                rows.append(
                    {
                        "model": name,
                        "hidden": hidden,
                        "layers": layers,
                        "adapter_kind": kind,
                        "query_rank": rank,
                        **fusion_memory(hidden, layers, kind, rank),
                    }
                )
    return rows
