"""Tiny teacher/student/generator shared by the synthesis tests (fast to compile and run)."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fastdfkd_jax.models.generator import Generator
from fastdfkd_jax.synthesis import cmi, cmi_parts
from fastdfkd_jax.synthesis.objective import Objective

NUM_CLASSES = 3
IMAGE_SHAPE = (4, 4, 1)


class TinyNet(nn.Module):
    """Conv -> BN -> ReLU -> Conv -> BN -> ReLU -> mean pool -> Dense, with a keyword-only train."""

    num_classes: int = NUM_CLASSES
    width: int = 3

    @nn.compact
    def __call__(self, x, *, train: bool):
        for _ in range(2):
            x = nn.Conv(self.width, (3, 3), use_bias=False)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(x)
            x = nn.relu(x)
        return nn.Dense(self.num_classes)(x.mean(axis=(1, 2)))


def randomize_batch_stats(variables, rng):
    """Non-trivial running statistics, so the BN loss is not zero by construction."""
    leaves, tree = jax.tree.flatten(variables["batch_stats"])
    keys = jax.random.split(rng, len(leaves))
    new = [jnp.abs(leaf + 0.5 * jax.random.normal(k, leaf.shape)) for leaf, k in zip(leaves, keys)]
    return {**variables, "batch_stats": jax.tree.unflatten(tree, new)}


def make_models(rng, dtype=jnp.float32):
    teacher, student = TinyNet(), TinyNet(width=2)
    x = jnp.zeros((2, *IMAGE_SHAPE), dtype)
    t_rng, s_rng, b_rng = jax.random.split(rng, 3)
    teacher_vars = randomize_batch_stats(teacher.init(t_rng, x, train=False), b_rng)
    student_vars = student.init(s_rng, x, train=False)
    return teacher, teacher_vars, student, student_vars


def identity_augment(rng, images):
    del rng
    return images


def make_objective(teacher, student, bn_momentum=0.0):
    return Objective(
        teacher=teacher,
        student=student,
        augment=identity_augment,
        bn=1.0,
        oh=0.5,
        bn_momentum=bn_momentum,
    )


def tiny_generator():
    return Generator(nz=3, ngf=2, img_size=IMAGE_SHAPE[0], nc=IMAGE_SHAPE[-1])


def make_fast_synthesizer(
    teacher,
    student,
    *,
    meta_gradient,
    g_steps,
    batch_size,
    strategy="meta",
    bn_momentum=0.0,
    batch_sharding=None,
    unroll=True,
):
    """A FastSynthesizer over the tiny models with the tests' shared hyperparameters."""
    from fastdfkd_jax.synthesis import fastdfkd

    return fastdfkd.FastSynthesizer(
        generator=tiny_generator(),
        objective=make_objective(teacher, student, bn_momentum),
        num_classes=NUM_CLASSES,
        batch_size=batch_size,
        g_steps=g_steps,
        lr_g=0.05,
        lr_z=0.1,
        meta_lr=0.01,
        inner_betas=(0.5, 0.999),
        meta_betas=(0.5, 0.999),
        inner_eps_root=1e-8,
        meta_gradient=meta_gradient,
        reptile_factor=3.0,
        strategy=strategy,
        remat=False,
        batch_sharding=batch_sharding,
        unroll=unroll,
    )


def make_cmi(steps=3, chunk_steps=0, adv=0.5, batch_size=4, bank_size=12, batch_sharding=None):
    """A CMI synthesizer of the tiny pair (mean 0.5, std 0.25), its teacher and student vars."""
    teacher, tv, student, sv = make_models(jax.random.PRNGKey(0))
    synth = cmi.CMISynthesizer(
        generator=tiny_generator(),
        teacher=teacher,
        student=student,
        head=cmi_parts.MLPHead(dim=4),
        num_classes=NUM_CLASSES,
        batch_size=batch_size,
        image_shape=IMAGE_SHAPE,
        steps=steps,
        lr_g=0.05,
        lr_z=0.05,
        betas=(0.5, 0.999),
        bn=1.0,
        oh=1.0,
        cr=0.8,
        temperature=0.2,
        bank_size=bank_size,
        n_neg=6,
        padding=1,
        flip=True,
        local_scale=(0.25, 1.0),
        mean=(0.5,),
        std=(0.25,),
        adv=adv,
        chunk_steps=chunk_steps,
        batch_sharding=batch_sharding,
    )
    return synth, tv, sv
