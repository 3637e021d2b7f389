"""Grids of comparisons as job graphs, run in process, as local subprocesses or on SLURM."""
