r"""Our compiled steps against a plain-PyTorch re-implementation of the original code's computation.

  python -m scripts.bench_vs_torch --repeats=3 --out=runs/bench_vs_torch.json [--profile]

(run from the repository root, as a module: it imports the plain-torch reference models of
fastdfkd_jax/models/torch_twins.py; needs the `torch` extra).

Same models and shapes on both sides: CIFAR-10 32x32x3, WRN-40-2 teacher -> WRN-16-1 student,
batch 256, random weights (speed does not depend on them). Timed, warm (one untimed call each
first), compilation apart, the two sides interleaved call by call so that load on a shared machine
hits both alike, each call after `--idle_s` of idle (see `side_by_side`); medians reported:

- `synthesis`: one Fast-5 synthesis call (5 inner steps of generator + augmentation + teacher with
  BN statistics + one-hot + adversarial term with the student, the first-order meta-gradient
  summed over the inner steps, the meta step, the BN momentum update, the pool insert);
- `kd_step`: one student step on 256 pool images (crop + flip + normalize, teacher forward, KL at
  T=20, SGD with momentum and weight decay);
- `deepinversion_step`: one DeepInversion step on 256 images (jitter + flip, teacher with BN
  statistics, one-hot, Jensen-Shannon adversarial term, Adam on the pixels, clip).
- `kd_parts` (opt-in, `--steps=kd_parts`): the KD step's two networks apart, on a fixed batch:
  `teacher_forward` (eval mode) and `student_forward_backward` (train mode, the KD loss against
  fixed teacher logits, gradients of the weights).

The PyTorch side is OUR re-implementation of the computation of github:zju-vipa/Fast-Datafree
(`datafree/synthesis/fast_meta.py`, `deepinversion.py`, `datafree_kd.py`), in plain PyTorch with the
CIFAR models of fastdfkd_jax/models/torch_twins.py; it is not the original's code. It keeps the
original's structure where it costs time: forward hooks on the teacher's BatchNorms, a host sync
(`loss.item()`) per inner step for the best iterate, the inner gradients added into the meta
generator's, and, as the original does not freeze them, gradients of the teacher's and student's
weights during synthesis (`torch` rows; `torch_frozen` rows freeze them). It leaves out the
original's image I/O (PNG files and a data loader rebuilt after every synthesis call) and its extra
DeepInversion terms (student BN statistics, total variation) at weight ~0. The KD step is timed
with the teacher's hooks removed (`torch`) and kept (`torch_hooks_on`, as the original runs).

`--original_repo=PATH` also times `synthesize()` of the user's own checkout of the original
(CPU, requires its dependencies, e.g. kornia), image I/O included, as it runs.
`--profile` adds the slowest XLA operations of our compiled steps (`benchmark.profile.op_profile`).
`--small` runs tiny models and batches (a quick check of the script).
"""

import copy
import functools
import json
import os
import sys
import time

from absl import app, flags, logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(REPO, "configs")
FAST_SPEC = os.path.join(CONFIGS, "dfkd_cifar.py:cifar10,fast5,wrn40_2-wrn16_1")
DEEPINV_SPEC = os.path.join(CONFIGS, "dfkd_cifar.py:cifar10,deepinv2k,wrn40_2-wrn16_1")

_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per step and side (medians).")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Synthesis and KD batch.")
_STEPS = flags.DEFINE_list(
    "steps", ["synthesis", "kd_step", "deepinversion_step"], "Steps to compare."
)
_POLICY = flags.DEFINE_string("precision", "tensorfloat32", "Our precision policy.")
_PROFILE = flags.DEFINE_bool("profile", False, "Also list the slowest XLA operations of ours.")
_SMALL = flags.DEFINE_bool("small", False, "Tiny models and batches (a check of the script).")
_OUT = flags.DEFINE_string("out", "", "Write the JSON results here.")
_IDLE = flags.DEFINE_float(
    "idle_s", 0.5, "Idle seconds before each timed call (the other side's threads may still spin)."
)
_ORIGINAL = flags.DEFINE_string("original_repo", "", "A checkout of the original code to time.")

SMALL_ARCH = "wrn10_1"
SMALL_BATCH = 8


# -- the PyTorch side -----------------------------------------------------------------------------
def torch_side(config, small: bool):
    """The PyTorch models and step functions for `config` (a Fast-5 or DeepInversion config)."""
    import torch
    import torch.nn.functional as F  # noqa: N812 (PyTorch convention)
    from torch import nn

    from fastdfkd_jax.models import torch_twins

    s, info_mean, info_std = config.synthesis, (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
    batch, image = config.synthesis.batch_size, 32
    torch.manual_seed(0)
    teacher_arch = SMALL_ARCH if small else config.teacher.arch
    student_arch = SMALL_ARCH if small else config.student.arch
    teacher = torch_twins.build(teacher_arch, 10).eval()
    student = torch_twins.build(student_arch, 10)
    torch_twins.randomize_(teacher, torch.Generator().manual_seed(1))
    mean = torch.tensor(info_mean).view(1, 3, 1, 1)
    std = torch.tensor(info_std).view(1, 3, 1, 1)

    class Generator(nn.Module):
        """The original's CIFAR generator (see fastdfkd_jax/models/generator.py)."""

        def __init__(self, nz, ngf):
            super().__init__()
            self.l1 = nn.Linear(nz, 2 * ngf * 8 * 8)
            self.ngf = ngf
            self.blocks = nn.Sequential(
                nn.BatchNorm2d(2 * ngf),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(2 * ngf, 2 * ngf, 3, padding=1, bias=False),
                nn.BatchNorm2d(2 * ngf),
                nn.LeakyReLU(0.2),
                nn.Upsample(scale_factor=2),
                nn.Conv2d(2 * ngf, ngf, 3, padding=1, bias=False),
                nn.BatchNorm2d(ngf),
                nn.LeakyReLU(0.2),
                nn.Conv2d(ngf, 3, 3, padding=1),
                nn.Sigmoid(),
            )

        def forward(self, z):
            return self.blocks(self.l1(z).view(z.shape[0], 2 * self.ngf, 8, 8))

    class BNStatistics:
        """A forward hook on a BatchNorm: its input's statistics against its running ones."""

        def __init__(self, module, momentum):
            self.handle = module.register_forward_hook(self.hook)
            self.momentum, self.memory, self.current = momentum, None, None

        def hook(self, module, inputs, output):
            x = inputs[0]
            mean = x.mean([0, 2, 3])
            var = x.permute(1, 0, 2, 3).reshape(x.shape[1], -1).var(1, unbiased=False)
            if self.memory is not None:
                mean = (1 - self.momentum) * mean + self.momentum * self.memory[0]
                var = (1 - self.momentum) * var + self.momentum * self.memory[1]
            self.loss = torch.norm(module.running_var - var, 2) + torch.norm(
                module.running_mean - mean, 2
            )
            self.current = (x.mean([0, 2, 3]).detach(), var.detach())

        def update_memory(self):
            mean, var = self.current
            if self.memory is None:
                self.memory = (mean, var)
            else:
                m = self.momentum
                self.memory = (
                    m * self.memory[0] + (1 - m) * mean,
                    m * self.memory[1] + (1 - m) * var,
                )

    def crop_flip(x, padding):
        """Per-sample random crop with zero padding and horizontal flip (kornia's, re-done)."""
        n = x.shape[0]
        padded = F.pad(x, (padding,) * 4)
        rows = torch.randint(0, 2 * padding + 1, (n,))
        cols = torch.randint(0, 2 * padding + 1, (n,))
        ar = torch.arange(image)
        r = (rows[:, None] + ar[None]).view(n, 1, image, 1).expand(n, 3, image, image)
        c = (cols[:, None] + ar[None]).view(n, 1, 1, image).expand(n, 3, image, image)
        idx = r * (image + 2 * padding) + c
        out = padded.flatten(2).gather(2, idx.flatten(2)).view(n, 3, image, image)
        flip = torch.rand(n) < 0.5
        return torch.where(flip.view(n, 1, 1, 1), out.flip(3), out)

    def kl(s_out, t_out, temperature):
        return F.kl_div(
            F.log_softmax(s_out / temperature, 1),
            F.softmax(t_out / temperature, 1),
            reduction="none",
        ).sum(1)

    def freeze(frozen: bool):
        for p in list(teacher.parameters()) + list(student.parameters()):
            p.requires_grad_(not frozen)

    hooks = [
        BNStatistics(m, s.bn_momentum) for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    nz, ngf = (8, 4) if small else (s.generator.nz, s.generator.ngf)
    generator = Generator(nz, ngf)
    meta_optimizer = torch.optim.Adam(
        generator.parameters(), s.fast.meta_lr, betas=s.fast.meta_betas
    )
    for p in generator.parameters():
        p.grad = torch.zeros_like(p)
    pool = []

    def synthesis():
        student.eval()
        z = torch.randn(batch, nz, requires_grad=True)
        targets = torch.randint(0, 10, (batch,))
        fast = copy.deepcopy(generator)
        optimizer = torch.optim.Adam(
            [{"params": fast.parameters()}, {"params": [z], "lr": s.fast.lr_z}],
            lr=s.fast.lr_g,
            betas=s.fast.inner_betas,
        )
        best_cost, best = float("inf"), None
        for it in range(s.fast.g_steps):
            x = fast(z)
            xa = (crop_flip(x, s.augment.padding) - mean) / std
            t_out = teacher(xa)
            loss_bn = sum(h.loss for h in hooks)
            loss_oh = F.cross_entropy(t_out, targets)
            s_out = student(xa)
            agree = (s_out.argmax(1) == t_out.argmax(1)).float()
            loss_adv = -(kl(s_out, t_out, 1.0) * agree).mean()
            loss = s.bn * loss_bn + s.oh * loss_oh + s.adv * loss_adv
            if best_cost > loss.item():
                best_cost, best = loss.item(), x.data
            optimizer.zero_grad()
            loss.backward()
            if it == 0:
                meta_optimizer.zero_grad(set_to_none=False)  # as the torch of the original
            for p, fp in zip(generator.parameters(), fast.parameters(), strict=True):
                p.grad.add_(fp.grad)
            if it == s.fast.g_steps - 1:
                meta_optimizer.step()
            optimizer.step()
        for h in hooks:
            h.update_memory()
        pool.append((best * 255).round().to(torch.uint8))
        del pool[:-4]

    kd_optimizer = torch.optim.SGD(student.parameters(), 0.2, momentum=0.9, weight_decay=1e-4)
    pool_images = torch.randint(0, 256, (4 * batch, 3, image, image), dtype=torch.uint8)

    def kd_step():
        student.train()
        idx = torch.randint(0, pool_images.shape[0], (config.kd.batch_size,))
        x = (crop_flip(pool_images[idx].float() / 255, config.kd.augment.padding) - mean) / std
        with torch.no_grad():
            t_out = teacher(x)
        s_out = student(x)
        loss = kl(s_out, t_out, config.kd.temperature).mean() * config.kd.temperature**2
        kd_optimizer.zero_grad()
        loss.backward()
        kd_optimizer.step()

    def hooks_on(on: bool):
        for h in hooks:
            h.handle.remove()
        if on:
            for h, m in zip(
                hooks, [m for m in teacher.modules() if isinstance(m, nn.BatchNorm2d)], strict=True
            ):
                h.handle = m.register_forward_hook(h.hook)

    return dict(
        synthesis=synthesis,
        kd_step=kd_step,
        freeze=freeze,
        hooks_on=hooks_on,
        teacher=teacher,
        student=student,
        hooks=hooks,
        mean=mean,
        std=std,
        kl=kl,
    )


def torch_deepinversion(config, side, small: bool):
    """One DeepInversion step (the original's `synthesize` loop body) on a fixed batch."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    s = config.synthesis
    batch = s.batch_size
    teacher, student, hooks = side["teacher"], side["student"], side["hooks"]
    mean, std = side["mean"], side["std"]
    for h in hooks:
        h.memory = None  # DeepInversion: no momentum
    inputs = torch.randn(batch, 3, 32, 32, requires_grad=True)
    targets = torch.randint(0, 10, (batch,))
    optimizer = torch.optim.Adam([inputs], s.deepinversion.lr, betas=s.deepinversion.betas)
    state = {"best": float("inf")}
    low, high = (0 - mean) / std, (1 - mean) / std

    def js(a, b, temperature):
        p, q = F.softmax(a / temperature, 1), F.softmax(b / temperature, 1)
        m = 0.5 * (p + q)
        return 0.5 * (
            F.kl_div(m.log(), p, reduction="batchmean")
            + F.kl_div(m.log(), q, reduction="batchmean")
        )

    def step():
        student.eval()
        shift = s.augment.jitter
        dx, dy = (int(v) for v in torch.randint(-shift, shift + 1, (2,)))
        x = torch.roll(inputs, shifts=(dx, dy), dims=(2, 3))
        if torch.rand(()) < 0.5:
            x = x.flip(3)
        t_out = teacher(x)
        s_out = student(x)
        loss = (
            s.bn * sum(h.loss for h in hooks)
            + s.oh * F.cross_entropy(t_out, targets)
            - s.adv * js(s_out, t_out, s.js_temperature)
        )
        if state["best"] > loss.item():
            state["best"] = loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            inputs.data = torch.max(torch.min(inputs, high), low)

    return step


def load_package(name: str, root: str) -> None:
    """Imports package `name` from directory `root` (without touching `sys.path`), so that
    `from name.x import y` then finds it.
    """
    import importlib.util

    init = os.path.join(root, name, "__init__.py")
    if not os.path.isfile(init):
        raise FileNotFoundError(f"--original_repo={root}: no {name}/__init__.py there.")
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[os.path.dirname(init)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def original_side(path: str, config):
    """`synthesize()` of the user's checkout of the original at `path` (as it runs, on CPU)."""
    import tempfile

    import torch

    load_package("datafree", path)  # the user's checkout
    from datafree.models.classifiers import wresnet
    from datafree.models.generator import Generator
    from datafree.synthesis import FastMetaSynthesizer
    from datafree.utils import Normalizer

    s = config.synthesis
    teacher, student = wresnet.wrn_40_2(num_classes=10), wresnet.wrn_16_1(num_classes=10)
    generator = Generator(nz=s.generator.nz, ngf=s.generator.ngf, img_size=32, nc=3)
    # The original creates missing meta gradients with .cuda(): give them on the CPU first.
    for p in generator.parameters():
        p.grad = torch.zeros_like(p)
    normalizer = Normalizer(mean=(0.4914, 0.4822, 0.4465), std=(0.247, 0.243, 0.261))
    synthesizer = FastMetaSynthesizer(
        teacher,
        student,
        generator,
        nz=s.generator.nz,
        num_classes=10,
        img_size=(3, 32, 32),
        save_dir=tempfile.mkdtemp(),
        iterations=s.fast.g_steps,
        lr_g=s.fast.lr_g,
        lr_z=s.fast.lr_z,
        synthesis_batch_size=s.batch_size,
        sample_batch_size=config.kd.batch_size,
        adv=s.adv,
        bn=s.bn,
        oh=s.oh,
        normalizer=normalizer,
        device="cpu",
        bn_mmt=s.bn_momentum,
        warmup=0,
    )
    return synthesizer.synthesize


def kd_parts(parts, state, side, policy: str, repeats: int, idle_s: float) -> dict:
    """Rows `teacher_forward` and `student_forward_backward` of the KD step's networks, both sides.

    One fixed batch [B, H, W, C] (NCHW for PyTorch), B the KD batch, of uniform images normalized
    as the KD step's inputs are; the student's loss is the KD loss at the config's temperature
    against the teacher's logits.
    """
    import jax
    import numpy as np
    import torch

    from fastdfkd_jax import compilation
    from fastdfkd_jax.synthesis import losses

    temperature = parts.config.kd.temperature
    mean, std = (side[k].numpy().transpose(0, 2, 3, 1) for k in ("mean", "std"))
    uniform = np.random.default_rng(0).uniform(
        size=(parts.config.kd.batch_size, *parts.info.image_shape)
    )
    images = ((uniform - mean) / std).astype(np.float32)
    x, x_torch = jax.numpy.asarray(images), torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    student = state.student

    def teacher_forward(teacher_vars, x):
        return parts.teacher.apply(teacher_vars, x, train=False)

    def student_gradients(params, batch_stats, x, teacher_logits):
        def loss_fn(params):
            logits, updates = parts.student.apply(
                {"params": params, "batch_stats": batch_stats},
                x,
                train=True,
                mutable=["batch_stats"],
            )
            return losses.kd_loss(logits, teacher_logits, temperature), updates

        return jax.grad(loss_fn, has_aux=True)(params)

    with compilation.precision_scope(policy):
        teacher = compilation.compile_jitted(jax.jit(teacher_forward), parts.teacher_vars, x)
        logits = teacher(parts.teacher_vars, x)
        grads = compilation.compile_jitted(
            jax.jit(student_gradients), student.params, student.batch_stats, x, logits
        )

    side["hooks_on"](False)
    side["freeze"](False)
    for p in side["teacher"].parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        logits_torch = side["teacher"](x_torch)

    def torch_teacher():
        with torch.no_grad():
            side["teacher"](x_torch)

    def torch_student():
        side["student"].train()
        side["student"].zero_grad()
        out = side["student"](x_torch)
        (side["kl"](out, logits_torch, temperature).mean() * temperature**2).backward()

    rows = dict(
        teacher_forward=side_by_side(
            dict(
                jax=lambda: jax.block_until_ready(teacher(parts.teacher_vars, x)),
                torch=torch_teacher,
            ),
            repeats,
            idle_s,
        ),
        student_forward_backward=side_by_side(
            dict(
                jax=lambda: jax.block_until_ready(
                    grads(student.params, student.batch_stats, x, logits)
                ),
                torch=torch_student,
            ),
            repeats,
            idle_s,
        ),
    )
    side["hooks_on"](True)
    return rows


# -- the sides side by side -----------------------------------------------------------------------
def side_by_side(calls: dict, repeats: int, idle_s: float) -> dict:
    """Medians of `repeats` interleaved calls of each (`timing.time_interleaved`: one warm-up call
    each, then rounds calling each once in turn).

    Each timed call starts after `idle_s` seconds of idle, so that neither side starts while the
    other's worker threads may still be spinning (an effect one measurement suggested and
    repeats did not confirm: docs/accelerators.md).
    """
    from fastdfkd_jax import timing

    seconds = timing.time_interleaved(calls, repeats, idle_s)
    return {name: timing.summarize(values) for name, values in seconds.items()}


def main(argv):
    del argv
    import jax
    import torch

    from fastdfkd_jax import compilation, components, config_args, distill
    from fastdfkd_jax.benchmark import profile, steps

    torch.set_num_threads(os.cpu_count() or 1)
    results = dict(
        device=jax.devices()[0].device_kind,
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        jax=jax.__version__,
        batch=SMALL_BATCH if _SMALL.value else _BATCH.value,
        idle_s=_IDLE.value,
        precision=_POLICY.value,
        load_average_before=os.getloadavg(),
        steps={},
    )
    batch = 0 if _SMALL.value else _BATCH.value
    small = dict(small_arch=SMALL_ARCH, small_batch=SMALL_BATCH)

    def ours(spec):
        parts, state = steps.build(spec, _POLICY.value, _SMALL.value, batch, **small)
        return parts, state

    fast_config = config_args.load_config(FAST_SPEC)
    fast_config.synthesis.batch_size = fast_config.kd.batch_size = results["batch"]
    side = torch_side(fast_config, _SMALL.value)
    rng = jax.random.PRNGKey(0)
    if {"synthesis", "kd_step", "kd_parts"} & set(_STEPS.value):
        parts, state = ours(FAST_SPEC)
        if "synthesis" in _STEPS.value:
            adv = components.adv_array(parts.config.synthesis.adv)
            with compilation.precision_scope(_POLICY.value):
                synth, synth_compile = parts.synthesizer.compile_call(
                    state, parts.teacher_vars, rng, adv, mesh=parts.mesh, donate=False
                )
            logging.info("compiled: synthesis %.1f s", synth_compile)

            def jax_synthesis():
                jax.block_until_ready(synth(state, parts.teacher_vars, rng, adv))

            def torch_frozen():
                side["freeze"](True)
                side["synthesis"]()
                side["freeze"](False)

            calls = dict(jax=jax_synthesis, torch=side["synthesis"], torch_frozen=torch_frozen)
            if _ORIGINAL.value:
                calls["original"] = original_side(_ORIGINAL.value, fast_config)
            row = side_by_side(calls, _REPEATS.value, _IDLE.value)
            row["jax_compile_s"] = synth_compile
            if _PROFILE.value:
                row["jax_profile"] = profile.op_profile(synth, jax_synthesis, 1)
            results["steps"]["synthesis"] = row
            del synth
        if "kd_step" in _STEPS.value:
            with compilation.precision_scope(_POLICY.value):
                kd, kd_compile = distill.compile_kd_step(
                    state,
                    parts.teacher_vars,
                    rng,
                    mesh=parts.mesh,
                    donate=False,
                    **components.kd_step_options(parts),
                )
            logging.info("compiled: KD step %.1f s", kd_compile)

            def jax_kd():
                jax.block_until_ready(kd(state, parts.teacher_vars, rng))

            side["freeze"](False)
            for p in side["teacher"].parameters():
                p.requires_grad_(False)

            def torch_hooks_on():
                side["hooks_on"](True)
                side["kd_step"]()
                side["hooks_on"](False)

            side["hooks_on"](False)
            row = side_by_side(
                dict(jax=jax_kd, torch=side["kd_step"], torch_hooks_on=torch_hooks_on),
                _REPEATS.value,
                _IDLE.value,
            )
            side["hooks_on"](True)
            row["jax_compile_s"] = kd_compile
            if _PROFILE.value:
                row["jax_profile"] = profile.op_profile(kd, jax_kd, 3)
            results["steps"]["kd_step"] = row
            del kd
        if "kd_parts" in _STEPS.value:
            results["steps"].update(
                kd_parts(parts, state, side, _POLICY.value, _REPEATS.value, _IDLE.value)
            )
        del parts, state
    if "deepinversion_step" in _STEPS.value:
        deepinv_config = config_args.load_config(DEEPINV_SPEC)
        deepinv_config.synthesis.batch_size = results["batch"]
        parts, state = ours(DEEPINV_SPEC)
        synth = parts.synthesizer
        tv, sv = parts.teacher_vars, state.student.variables
        adv = components.adv_array(parts.config.synthesis.adv)
        carry = jax.jit(synth.begin)(state.synthesizer, jax.random.PRNGKey(4), tv)
        start = time.perf_counter()
        with compilation.precision_scope(_POLICY.value):
            advance = compilation.compile_jitted(
                jax.jit(functools.partial(synth.advance, num_steps=1, unroll=True)),
                carry,
                state.bn_memory,
                tv,
                sv,
                adv,
                jax.numpy.int32(0),
            )
        advance_compile = time.perf_counter() - start

        def jax_step():
            jax.block_until_ready(advance(carry, state.bn_memory, tv, sv, adv, jax.numpy.int32(0)))

        torch_step = torch_deepinversion(deepinv_config, side, _SMALL.value)

        def torch_frozen_step():
            side["freeze"](True)
            torch_step()
            side["freeze"](False)

        side["freeze"](False)
        row = side_by_side(
            dict(jax=jax_step, torch=torch_step, torch_frozen=torch_frozen_step),
            _REPEATS.value,
            _IDLE.value,
        )
        row["jax_compile_s"] = advance_compile
        if _PROFILE.value:
            row["jax_profile"] = profile.op_profile(advance, jax_step, 3)
        results["steps"]["deepinversion_step"] = row
    results["load_average_after"] = os.getloadavg()
    for name, row in results["steps"].items():
        ratios = {
            k: row[k]["median_s"] / row["jax"]["median_s"]
            for k in row
            if k.startswith(("torch", "original"))
        }
        row["speedup_vs"] = ratios  # > 1: ours is faster
        logging.info(
            "%s: ours %.3f s; %s",
            name,
            row["jax"]["median_s"],
            ", ".join(f"{k} {row[k]['median_s']:.3f} s ({v:.2f}x)" for k, v in ratios.items()),
        )
    text = json.dumps(results, indent=2)
    if _OUT.value:
        os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
        with open(_OUT.value, "w") as f:
            f.write(text)
    sys.stdout.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
