"""Scores: the paper's text metrics (BLEU variants, ROUGE, exact match), pass@k and the paired
bootstrap. Modules are imported directly (`from advfusion_cli.metrics.text import ...`).
"""
