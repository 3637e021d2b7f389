#!/usr/bin/env bash
# Start advfusion on this node from SLURM's environment (run by `srun` in the sbatch scripts).
#
#   ADVFUSION_LAUNCHER=accelerate (default): one srun task per node runs `accelerate launch`,
#     which starts one process per GPU of the node; machine rank, process count and the
#     rendezvous address come from SLURM_NODEID, SLURM_NNODES, SLURM_GPUS_ON_NODE and the
#     job's first node.
#   ADVFUSION_LAUNCHER=srun: one srun task per GPU runs advfusion directly; the env://
#     variables torch reads (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) are set
#     from SLURM_PROCID, SLURM_LOCALID and SLURM_NTASKS. Each task then gets the scheduler's
#     signals itself and its exit code (75 = requeue me) is srun's. Use it with
#     `#SBATCH --ntasks-per-node=8 --gpus-per-task=1` and the same in run_with_requeue.
#
# Everything after the script's name is the advfusion command line, e.g.
#   launch-node.sh adv-fuse --spec job.yaml
# ADVFUSION_ACCELERATE_CONFIG names an accelerate config (e.g. an FSDP one); its
# num_machines, num_processes, machine_rank and main_process_ip are replaced by SLURM's.
set -euo pipefail

# the whole list is read (no `| head`: with pipefail, scontrol's SIGPIPE would end the script)
mapfile -t nodes < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
head_node=${nodes[0]}
port=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}

if [ "${ADVFUSION_LAUNCHER:-accelerate}" = "srun" ]; then
    export RANK=$SLURM_PROCID LOCAL_RANK=$SLURM_LOCALID WORLD_SIZE=$SLURM_NTASKS
    export LOCAL_WORLD_SIZE=$SLURM_NTASKS_PER_NODE MASTER_ADDR=$head_node MASTER_PORT=$port
    exec python -m advfusion_cli "$@"
fi

gpus_per_node=${SLURM_GPUS_ON_NODE:-8}
config=()
if [ -n "${ADVFUSION_ACCELERATE_CONFIG:-}" ]; then
    config=(--config_file "$ADVFUSION_ACCELERATE_CONFIG")
fi
exec accelerate launch "${config[@]}" \
    --multi_gpu \
    --num_machines "$SLURM_NNODES" \
    --machine_rank "$SLURM_NODEID" \
    --num_processes $((SLURM_NNODES * gpus_per_node)) \
    --main_process_ip "$head_node" \
    --main_process_port "$port" \
    --rdzv_backend static \
    --same_network \
    -m advfusion_cli "$@"
