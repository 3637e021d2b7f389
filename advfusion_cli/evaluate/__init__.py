"""Evaluation of finished runs: generation on a test split, the paper's metrics, pass@k.

    result = evaluate(resolve_run("advfusion/ruby", Path("advfusion-runs")), EvalRequest(limit=100))
    result.scores      # {"bleu4_smooth_13a_corpus": ..., "pass@1": ..., ...}
    result.folder      # predictions.jsonl, metrics.json (+ fusion_attention.json)

Submodules are imported directly where needed; `execution` stays free of torch so sandbox
worker processes start fast.
"""
