"""Training workflows: train-adapters, fuse (AdapterFusion) and adv-fuse (AdvFusion, arXiv 2511.02869).

Each command is one function over a resolved job spec - `train_adapters.train_adapters`,
`fuse.fuse`, `adv_fuse.adv_fuse` - that plans its runs (`plan`), then executes each run
(`execute`): lock, reuse or resume, train with the one loop in `trainer`, export, record.
See docs/workflows.md.
"""
