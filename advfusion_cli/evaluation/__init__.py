"""Evaluation: the paper's text metrics, pass@k, paired bootstrap, and a sandbox for generated code.

Modules are imported directly (`from advfusion_cli.evaluation.metrics import ...`) so that the
sandbox can be used without loading numpy, sacrebleu or rouge-score.
"""
