# Sourced by the sbatch scripts: run one advfusion command as a job step, stop it cleanly
# when SLURM says the job must end, and requeue the job so that it resumes.
#
# SLURM sends the batch shell SIGUSR1 ahead of the time limit (--signal=B:USR1@<seconds>)
# and SIGTERM on preemption or scancel. The trap creates $ADVFUSION_STOP_FILE, which every
# training process checks once per optimizer step: all of them finish the step, write a
# checkpoint together, mark the run interrupted and exit with code 75. The step's exit code
# is 75 under ADVFUSION_LAUNCHER=srun, and 1 under accelerate launch (torchrun reports a
# worker's non-zero exit as its own failure), so the script requeues when the step exits 75
# or when it stopped after the trap fired. The requeued job runs the same command, which
# resumes from that checkpoint (finished runs are reused).

run_with_requeue() {
    : "${ADVFUSION_STOP_FILE:?set ADVFUSION_STOP_FILE to a path on a filesystem all nodes share}"
    export ADVFUSION_STOP_FILE
    local max_requeues=${ADVFUSION_MAX_REQUEUES:-20}
    rm -f "$ADVFUSION_STOP_FILE"
    stop_asked=""
    trap 'stop_asked=1; touch "$ADVFUSION_STOP_FILE"' USR1 TERM

    srun --kill-on-bad-exit=1 "$@" &
    local step=$! rc=0
    # a trapped signal ends `wait` early: keep waiting while the checkpoint is written
    while true; do
        wait "$step" && rc=0 || rc=$?
        kill -0 "$step" 2>/dev/null || break
    done
    trap - USR1 TERM
    rm -f "$ADVFUSION_STOP_FILE"

    if [ "$rc" -eq 75 ] || { [ -n "$stop_asked" ] && [ "$rc" -ne 0 ]; }; then
        if [ "${SLURM_RESTART_COUNT:-0}" -ge "$max_requeues" ]; then
            echo "advfusion: stopped for a requeue, but the job was requeued $max_requeues times already" >&2
            return 75
        fi
        echo "advfusion: checkpoint written; requeueing job $SLURM_JOB_ID to resume" >&2
        scontrol requeue "$SLURM_JOB_ID"
        return 0
    fi
    return "$rc"
}
