"""Two processes on localhost with `jax.distributed` (gloo CPU collectives) run sharded steps.

Each process has 2 simulated CPU devices; the mesh spans all 4. Both processes must end with the
same state (default suite, ~30 s), equal to float32 rounding to the same steps run in this process
on a 4-device mesh (marked slow: one more compile).
"""

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from fastdfkd_jax import checkpoint, sharding
from tests.fastdfkd_jax import multihost_worker as worker
from tests.fastdfkd_jax import test_sharding as ts

NUM_PROCESSES = 2
DEVICES_PER_PROCESS = 2
TIMEOUT_SECONDS = 300
POLL_SECONDS = 0.2
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_env() -> dict:
    """The workers' environment: simulated CPU devices, the repository importable."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={DEVICES_PER_PROCESS}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    return env


def launch(tmp_path) -> None:
    """Runs the workers to completion; kills them and shows a log tail on failure or timeout."""
    env = worker_env()
    port = free_port()
    procs = []
    logs = []
    try:
        for i in range(NUM_PROCESSES):
            log = open(tmp_path / f"worker_{i}.log", "w")  # noqa: SIM115 -- closed below
            logs.append(log)
            cmd = [sys.executable, "-m", "tests.fastdfkd_jax.multihost_worker"]
            cmd += [str(i), str(NUM_PROCESSES), str(port), str(tmp_path)]
            procs.append(
                subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            )
        # Wait for all; stop early when one fails (the other would wait for it until timeout).
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while any(p.poll() is None for p in procs):
            if any(p.poll() for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(POLL_SECONDS)
        codes = [p.poll() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()
    # A worker that failed first, then one that was stopped (killed after the other failed, or out
    # of time).
    for i, code in sorted(enumerate(codes), key=lambda item: item[1] is None):
        if code is None or code:
            tail = (tmp_path / f"worker_{i}.log").read_text()[-4000:]
            what = (
                "was stopped (timeout or the other failed)"
                if code is None
                else f"exited with {code}"
            )
            raise AssertionError(f"worker {i} {what}:\n{tail}")


@pytest.fixture(scope="module")
def workers(tmp_path_factory):
    """Runs the two workers once per module: (their output directory, their .npz results)."""
    out = tmp_path_factory.mktemp("multihost")
    launch(out)
    return out, [np.load(out / f"state_{i}.npz") for i in range(NUM_PROCESSES)]


def leaves_of(result) -> list[np.ndarray]:
    return [result[k] for k in sorted(result.files) if k.startswith("leaf_")]


def test_two_processes_hold_the_same_state(workers):
    out, results = workers
    leaves = [leaves_of(r) for r in results]
    # Bit-identical across processes: replicated state is computed, not copied, on each.
    for a, b in zip(leaves[0], leaves[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(results[0]["accuracy"]) == float(results[1]["accuracy"])
    # Each process evaluated its own contiguous share of the 37-example split.
    np.testing.assert_array_equal(results[0]["rows"], [0, 19])
    np.testing.assert_array_equal(results[1]["rows"], [19, 37])
    # Orbax wrote the teacher once (process 0's meta.json), readable by a single process.
    meta, _ = checkpoint.load_teacher(str(out / "teacher"))
    assert meta["arch"] == "tiny"


@pytest.mark.slow
def test_two_processes_equal_one_process_on_four_devices(workers):
    out, results = workers
    # The same steps on 4 devices of this one process.
    mesh = ts.mesh_of(NUM_PROCESSES * DEVICES_PER_PROCESS)  # simulated CPU devices
    previous = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        state, accuracy = worker.run(mesh)
    finally:
        jax.config.update("jax_disable_most_optimizations", previous)
    other = jax.tree.unflatten(jax.tree.structure(state), leaves_of(results[0]))
    want = sharding.to_host(state)
    for field in ("student", "pool", "bn_memory", "epoch"):
        ts.assert_trees_close(getattr(other, field), getattr(want, field))
    # The generator by what it computes (see test_sharding: Adam turns rounding noise in the
    # gradient of a bias before a BatchNorm into +-lr steps that change no output).
    synth = ts.make_synthesizer(mesh)
    z = jax.random.normal(jax.random.PRNGKey(3), synth.latent_shape())
    generate = jax.jit(synth.generate)
    np.testing.assert_allclose(
        generate(other.synthesizer.params, other.synthesizer.batch_stats, z),
        generate(want.synthesizer.params, want.synthesizer.batch_stats, z),
        rtol=ts.RTOL,
        atol=ts.ATOL,
    )
    assert float(results[0]["accuracy"]) == accuracy
    _, variables = checkpoint.load_teacher(str(out / "teacher"))
    ts.assert_trees_close(variables, jax.device_get(state.student.variables))


# The heartbeat timeout the lost-host test gives its processes, and the bound the issue sets on how
# long the surviving process may take to stop.
TEST_HEARTBEAT_SECONDS = 10
LOST_HOST_BOUND_SECONDS = 60
# How the coordination service names the lost task: which of its two checks fires first is a race,
# the one on the task's own heartbeats ("Task 1 heartbeat timeout") or the sweep over all tasks
# ("The following tasks are unhealthy (stopped sending heartbeats):" then one task per line).
LOST_TASK_1 = (
    r"Task 1 heartbeat timeout|tasks are unhealthy \(stopped sending heartbeats\):\s*\n1\n"
)


@contextlib.contextmanager
def workers_of_mode(tmp_path, *mode):
    """The worker processes started in a special `mode` (`multihost_worker`'s arguments after
    the output directory), logging to tmp_path/worker_<i>.log; killed on leaving if still alive."""
    env = worker_env()
    port = free_port()
    procs, logs = [], []
    try:
        for i in range(NUM_PROCESSES):
            log = open(tmp_path / f"worker_{i}.log", "w")  # noqa: SIM115 -- closed below
            logs.append(log)
            cmd = [sys.executable, "-u", "-m", "tests.fastdfkd_jax.multihost_worker"]
            cmd += [str(i), str(NUM_PROCESSES), str(port), str(tmp_path), *mode]
            procs.append(
                subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
            )
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in logs:
            log.close()


@pytest.mark.slow
def test_a_lost_host_stops_the_other_naming_it(tmp_path):
    """Process 1 dies without a word after both met (a reclaimed VM); process 0, waiting for it
    in a collective, fails well within a minute (`distributed.heartbeat_timeout_seconds`) and its
    log names task 1, instead of hanging."""
    with workers_of_mode(tmp_path, "lose", str(TEST_HEARTBEAT_SECONDS)) as procs:
        lost_code = procs[1].wait(timeout=TIMEOUT_SECONDS)
        lost_at = time.monotonic()
        survivor_code = procs[0].wait(timeout=LOST_HOST_BOUND_SECONDS)
        stopped_after = time.monotonic() - lost_at
    survivor_log = (tmp_path / "worker_0.log").read_text()
    assert lost_code == worker.LOST_EXIT, (tmp_path / "worker_1.log").read_text()[-2000:]
    assert "both alive" in survivor_log and "UNEXPECTED" not in survivor_log
    assert survivor_code != 0 and stopped_after < LOST_HOST_BOUND_SECONDS
    assert re.search(LOST_TASK_1, survivor_log), survivor_log[-3000:]


@pytest.mark.slow
def test_a_preemption_notice_to_one_host_stops_every_host_after_the_same_epoch(tmp_path):
    """SIGTERM reaches process 1 only (its VM is reclaimed); through JAX's preemption sync point
    (`preemption.Watch.should_stop`, which the trainer asks after each epoch) both processes stop
    after the same epoch, so every host saves the same step."""
    with workers_of_mode(tmp_path, "preempt") as procs:
        codes = [p.wait(timeout=TIMEOUT_SECONDS) for p in procs]
    assert codes == [0, 0], [(tmp_path / f"worker_{i}.log").read_text()[-2000:] for i in (0, 1)]
    stopped = [
        json.loads((tmp_path / f"preempted_{i}.json").read_text())["stopped_after"]
        for i in range(NUM_PROCESSES)
    ]
    assert stopped[0] == stopped[1], stopped
    assert worker.NOTICE_EPOCH <= stopped[0] < worker.MAX_EPOCHS, stopped
