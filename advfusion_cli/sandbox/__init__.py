"""The sandbox that runs model-written programs: per-language toolchains, namespaces and
cgroups isolation, and the process runner. Imported directly
(`from advfusion_cli.sandbox.programs import ...`) so it loads no numpy, sacrebleu or torch.
"""
