"""Interoperability with the AdapterHub `adapters` library's and peft's saved layouts.

`advfusion import` reads an `adapters` bottleneck adapter (seq_bn, double_seq_bn, Compacter),
a whole adapter setup with its AdapterFusion, or a peft LoRA folder, converts it to the
engine's own format and places it in the workdir (a finished "import" run plus the adapter
store), so every command uses it like an adapter advfusion trained. `advfusion export` writes
a finished run back out in the other library's layout. See docs/interop.md.
"""
