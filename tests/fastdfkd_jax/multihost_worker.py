"""One process of the 2-process test (tests/fastdfkd_jax/test_multihost.py).

  python -m tests.fastdfkd_jax.multihost_worker PROCESS_ID NUM_PROCESSES PORT OUT_DIR

Run with `XLA_FLAGS=--xla_force_host_platform_device_count=2` (set by the test). Joins
`jax.distributed` on 127.0.0.1:PORT with gloo CPU collectives, builds the mesh over every process's
devices, runs two sharded synthesis calls and two student steps on the tiny models of
test_sharding.py, evaluates the student on a small split that each process reads its share of,
saves and restores the run state and a teacher directory with orbax from every process, and writes
the whole final state (the sharded pool gathered) to OUT_DIR/state_<PROCESS_ID>.npz.
"""

import json
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from fastdfkd_jax import checkpoint, preemption, sharding
from fastdfkd_jax.evaluation.on_device import make_evaluator
from tests.fastdfkd_jax import test_sharding as ts
from tests.fastdfkd_jax import tiny

SYNTHESIS_CALLS = 2
KD_STEPS = 2
EVAL_SPLIT = 37  # not a multiple of the eval batch or of the process count: exercises padding
EVAL_BATCH = 8


def eval_split() -> dict:
    """A small labelled split, the same in every process (each evaluates only its share)."""
    rng = np.random.default_rng(0)
    return {
        "image": rng.uniform(size=(EVAL_SPLIT, *tiny.IMAGE_SHAPE)).astype(np.float32),
        "label": rng.integers(0, tiny.NUM_CLASSES, EVAL_SPLIT).astype(np.int32),
    }


def run(mesh) -> tuple:
    """The steps of the test on `mesh`: returns (state, accuracy)."""
    synthesizer = ts.make_synthesizer(mesh)
    state = ts.make_state(synthesizer, ts.student_tx())
    synth_fn, state, tv = ts.compile_synthesis(mesh, synthesizer, state)
    kd_fn, _, _ = ts.compile_kd(mesh, state, synthesizer)
    for i in range(SYNTHESIS_CALLS):
        state, _, _ = synth_fn(state, tv, jax.random.PRNGKey(10 + i), jnp.float32(0.5))
    for i in range(KD_STEPS):
        state, _ = kd_fn(state, tv, jax.random.PRNGKey(20 + i))
    _, _, student, _ = ts.models()
    evaluate = make_evaluator(student, ts.MEAN, ts.STD, mesh, EVAL_BATCH)
    return state, evaluate(state.student.variables, eval_split())


def join(process_id: int, num_processes: int, port: int, **overrides) -> None:
    """Joins `jax.distributed` on 127.0.0.1:`port` with gloo CPU collectives (`overrides`: other
    keys of the `distributed` block)."""
    sharding.initialize_distributed(
        sharding.distributed_config(
            enabled=True,
            coordinator_address=f"127.0.0.1:{port}",
            num_processes=num_processes,
            process_id=process_id,
            cpu_collectives="gloo",
            **overrides,
        )
    )


def main(process_id: int, num_processes: int, port: int, out_dir: str) -> None:
    jax.config.update("jax_disable_most_optimizations", True)  # compile in seconds, not tens
    join(process_id, num_processes, port)
    mesh = sharding.make_mesh(sharding.mesh_config())
    assert jax.process_count() == num_processes and sharding.data_size(mesh) == jax.device_count()
    state, accuracy = run(mesh)

    # Orbax from every process: a run checkpoint round trip and a teacher directory.
    with checkpoint.make_manager(os.path.join(out_dir, "run"), max_to_keep=1) as manager:
        checkpoint.save(manager, 1, state)
    target = sharding.place_state(jax.tree.map(jnp.zeros_like, state), mesh)
    with checkpoint.make_manager(os.path.join(out_dir, "run"), max_to_keep=1) as manager:
        restored, step = checkpoint.restore_latest(manager, target)
    assert step == 1
    restored, state_host = sharding.to_host(restored), sharding.to_host(state)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state_host), strict=True):
        np.testing.assert_array_equal(a, b)
    checkpoint.save_teacher(
        os.path.join(out_dir, "teacher"),
        state.student.variables,
        arch="tiny",
        num_classes=tiny.NUM_CLASSES,
        dataset="none",
        image_shape=tiny.IMAGE_SHAPE,
    )
    multihost_utils.sync_global_devices("teacher saved")

    leaves = jax.tree.leaves(state_host)  # the sharded pool gathered from both processes
    np.savez(
        os.path.join(out_dir, f"state_{process_id}.npz"),
        accuracy=accuracy,
        rows=np.asarray(sharding.split_share(EVAL_SPLIT)[0].indices(EVAL_SPLIT)[:2]),
        **{f"leaf_{i:03d}": x for i, x in enumerate(leaves)},
    )
    jax.distributed.shutdown()


def lose_a_host(process_id: int, num_processes: int, port: int, heartbeat: int) -> None:
    """Both processes meet once; then the last one dies without a word (a reclaimed VM) and the
    others wait for it in a collective, which must fail within about `heartbeat` seconds."""
    join(process_id, num_processes, port, heartbeat_timeout_seconds=heartbeat)
    multihost_utils.sync_global_devices("both alive")
    print("both alive", flush=True)
    if process_id == num_processes - 1:
        os._exit(LOST_EXIT)  # no shutdown, no goodbye
    multihost_utils.sync_global_devices("never reached: the other host is gone")
    print("UNEXPECTED: the collective completed", flush=True)


# The lost host's exit status (it is killed in spirit: no shutdown).
LOST_EXIT = 17
# The preemption notice: SIGTERM to the last process after this epoch; the run gives up if no sync
# point came within MAX_EPOCHS epochs. An epoch here is a collective and a short pause.
NOTICE_EPOCH = 3
MAX_EPOCHS = 40
EPOCH_SECONDS = 0.25


def preempt_one_host(process_id: int, num_processes: int, port: int, out_dir: str) -> None:
    """A SIGTERM reaches the last process only (a reclaimed VM's notice); every process asks the
    trainer's `preemption.Watch` after each epoch, as the trainer does, and must stop after the
    same epoch. Writes `preempted_<process_id>.json`: the epoch it stopped after (or None).
    """
    join(process_id, num_processes, port)
    watch = preemption.Watch()
    stopped = None
    for epoch in range(1, MAX_EPOCHS + 1):
        multihost_utils.sync_global_devices(f"epoch {epoch}")
        time.sleep(EPOCH_SECONDS)
        if epoch == NOTICE_EPOCH and process_id == num_processes - 1:
            os.kill(os.getpid(), signal.SIGTERM)
        if watch.should_stop(epoch):
            stopped = epoch
            break
    watch.close()
    with open(os.path.join(out_dir, f"preempted_{process_id}.json"), "w") as f:
        json.dump({"stopped_after": stopped}, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    if len(sys.argv) > 5 and sys.argv[5] == "preempt":
        preempt_one_host(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) > 5 and sys.argv[5] == "lose":
        lose_a_host(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[6]))
    else:
        main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
