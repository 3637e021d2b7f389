"""examples/slurm: the requeue logic of the sbatch scripts, with `srun`, `scontrol` and the
training step replaced by stubs on PATH (bash only, no SLURM needed), and the mapping of
SLURM's environment to the launcher's arguments."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM = ROOT / "examples" / "slurm"


def stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/usr/bin/env bash\n" + textwrap.dedent(body))
    path.chmod(0o755)


@pytest.fixture
def slurm(tmp_path):
    """PATH with stub srun (runs its command), scontrol (records requeues, names the
    nodes) and accelerate (records its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub(
        bin_dir,
        "srun",
        """
        while [[ "$1" == --* ]]; do shift; done
        exec "$@"
        """,
    )
    stub(
        bin_dir,
        "scontrol",
        f"""
        if [ "$1" = show ]; then printf 'node-a\\nnode-b\\n'; exit 0; fi
        echo "$@" >> {tmp_path}/scontrol.log
        """,
    )
    stub(bin_dir, "accelerate", f'echo "$@" > {tmp_path}/accelerate.args\n')
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "ADVFUSION_STOP_FILE": str(tmp_path / "stop"),
    }
    return tmp_path, env


def job(tmp_path: Path, step: str) -> Path:
    """A batch script sourcing requeue.sh, whose step is `step` (a bash snippet)."""
    stub(tmp_path, "step.sh", step)
    script = tmp_path / "job.sh"
    script.write_text(
        f"source {SLURM / 'requeue.sh'}\n"
        f"run_with_requeue --ntasks-per-node=1 {tmp_path / 'step.sh'}\n"
        'echo "rc=$?"\n'
    )
    return script


def requeues(tmp_path: Path) -> list[str]:
    log = tmp_path / "scontrol.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_step_exiting_75_requeues_the_job(slurm):
    tmp_path, env = slurm
    done = subprocess.run(
        ["bash", str(job(tmp_path, "exit 75\n"))], capture_output=True, text=True, env=env
    )
    assert "rc=0" in done.stdout, done.stderr
    assert requeues(tmp_path) == ["requeue 4242"]


def test_a_failing_step_is_not_requeued(slurm):
    tmp_path, env = slurm
    done = subprocess.run(
        ["bash", str(job(tmp_path, "exit 3\n"))], capture_output=True, text=True, env=env
    )
    assert "rc=3" in done.stdout and requeues(tmp_path) == []


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_the_batch_shell_signal_creates_the_stop_file_waits_and_requeues(slurm, sig):
    """SLURM's --signal=B:USR1 (or a preemption's SIGTERM) reaches the batch shell: the trap
    creates the stop file, the script keeps waiting for the step (which checkpoints, here:
    sees the file, then exits 1 as torchrun reports a stopped worker), then requeues."""
    tmp_path, env = slurm
    step = f"""
    touch {tmp_path}/step-started
    while [ ! -e "$ADVFUSION_STOP_FILE" ]; do sleep 0.05; done
    sleep 0.3  # the checkpoint write
    touch {tmp_path}/checkpointed
    exit 1
    """
    shell = subprocess.Popen(
        ["bash", str(job(tmp_path, step))], stdout=subprocess.PIPE, text=True, env=env
    )
    for _ in range(400):
        if (tmp_path / "step-started").exists():
            break
        time.sleep(0.05)
    shell.send_signal(sig)
    out, _ = shell.communicate(timeout=60)
    assert (tmp_path / "checkpointed").exists()  # the script waited for the step
    assert "rc=0" in out and requeues(tmp_path) == ["requeue 4242"]
    assert not (tmp_path / "stop").exists()  # removed for the requeued job


def test_the_requeue_count_is_capped(slurm):
    tmp_path, env = slurm
    env = {**env, "SLURM_RESTART_COUNT": "20"}
    done = subprocess.run(
        ["bash", str(job(tmp_path, "exit 75\n"))], capture_output=True, text=True, env=env
    )
    assert "rc=75" in done.stdout and requeues(tmp_path) == []
    assert "requeued 20 times already" in done.stderr


def test_launch_node_maps_slurm_to_accelerate_launch(slurm):
    tmp_path, env = slurm
    env |= {"SLURM_JOB_NODELIST": "node-[a-b]", "SLURM_NNODES": "2", "SLURM_NODEID": "1"}
    env |= {"SLURM_GPUS_ON_NODE": "8"}
    done = subprocess.run(
        ["bash", str(SLURM / "launch-node.sh"), "adv-fuse", "--spec", "job.yaml"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    args = (tmp_path / "accelerate.args").read_text().split()
    pairs = dict(zip(args, args[1:], strict=False))
    assert pairs["--num_machines"] == "2" and pairs["--machine_rank"] == "1"
    assert pairs["--num_processes"] == "16" and pairs["--main_process_ip"] == "node-a"
    assert args[-4:] == ["advfusion_cli", "adv-fuse", "--spec", "job.yaml"]


def test_launch_node_srun_mode_sets_the_torch_env(slurm):
    tmp_path, env = slurm
    stub(
        tmp_path / "bin",
        "python",
        f'env | grep -E "^(RANK|LOCAL_RANK|WORLD_SIZE|MASTER_ADDR)=" | sort > {tmp_path}/env\n',
    )
    env |= {"ADVFUSION_LAUNCHER": "srun", "SLURM_JOB_NODELIST": "node-[a-b]"}
    env |= {"SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_NTASKS": "16"}
    env |= {"SLURM_NTASKS_PER_NODE": "8"}
    done = subprocess.run(
        ["bash", str(SLURM / "launch-node.sh"), "adv-fuse"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "env").read_text().split() == [
        "LOCAL_RANK=1",
        "MASTER_ADDR=node-a",
        "RANK=9",
        "WORLD_SIZE=16",
    ]


@pytest.mark.parametrize("script", ["advfusion-1node-8gpu.sbatch", "advfusion-2node-8gpu.sbatch"])
def test_the_sbatch_scripts_ask_for_the_signal_and_requeue(script):
    text = (SLURM / script).read_text()
    assert "#SBATCH --signal=B:USR1@" in text and "#SBATCH --requeue" in text
    assert "source examples/slurm/requeue.sh" in text and "run_with_requeue" in text
    assert "HF_HUB_OFFLINE=1" in text and "training.timeout_minutes" in text
    assert subprocess.run(["bash", "-n", str(SLURM / script)]).returncode == 0
