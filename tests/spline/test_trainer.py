"""The vectorized trainer equals one-network training; zero learning rate; divergence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from spline import data as data_lib
from spline import preprocess, starts, trainer
from tests.spline.conftest import load_config


@pytest.fixture(scope="module")
def prep():
    config = load_config("spline_diabetes")
    return preprocess.prepare(data_lib.load_data(config.dataset))


def _params(prep, seeds):
    d = prep.z_train.shape[1]
    trees = [starts.random_params("glorot", (8, 1), d, jax.random.key(s)) for s in range(seeds)]
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_grid_training_equals_one_network_at_a_time(prep, optimizer):
    tr = trainer.make_trainer((8, 1), False, 32, optimizer)
    lrs, keys = (1e-3, 3e-2), jax.random.split(jax.random.key(5), 2)
    params = _params(prep, 2)
    val, test = trainer.train_curves(tr, params, lrs, prep, 3, keys)
    assert val.shape == test.shape == (2, 2, 4)
    z, t = jnp.asarray(prep.z_train), jnp.asarray(prep.t_train)
    for li, lr in enumerate(lrs):
        for s in range(2):
            p = jax.tree.map(lambda a, s=s: a[s], params)
            state = tr.init_state(p, jnp.float32(lr))
            losses = [float(tr.loss(p, prep.z_test, prep.t_test))]
            for e in range(3):
                order = tr.order(jax.random.fold_in(keys[s], e), z.shape[0])
                p, state = tr.epoch(p, state, z, t, order)
                losses.append(float(tr.loss(p, prep.z_test, prep.t_test)))
            np.testing.assert_allclose(test[li, s], losses, rtol=2e-5)
    # The larger rate moves further from the start in three epochs.
    assert abs(test[1, 0, -1] - test[1, 0, 0]) > abs(test[0, 0, -1] - test[0, 0, 0])


def test_zero_learning_rate_keeps_the_start_and_divergence_is_inf(prep):
    tr = trainer.make_trainer((8, 1), False, 32, "sgd")
    val, _ = trainer.train_curves(
        tr, _params(prep, 1), (0.0, 1e6), prep, 2, jax.random.split(jax.random.key(0), 1)
    )
    np.testing.assert_allclose(val[0, 0], val[0, 0, 0], rtol=1e-6)
    assert np.isinf(val[1, 0, -1])  # lr 1e6 diverges: recorded as inf, never NaN


def test_epoch_seconds_and_unknown_optimizer(prep):
    tr = trainer.make_trainer((8, 1), False, 32, "adam")
    p = jax.tree.map(lambda a: a[0], _params(prep, 1))
    secs = trainer.epoch_seconds(tr, p, 1e-3, prep, 3, jax.random.key(0))
    assert len(secs) == 3 and all(s > 0 for s in secs)
    with pytest.raises(ValueError, match="'rmsprop'"):
        trainer.make_trainer((8, 1), False, 32, "rmsprop")
