"""Tests of the model zoo: registry, parameter counts, shapes, BatchNorm modes, generators."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fastdfkd_jax import models
from fastdfkd_jax.models import (
    CLASSIFIERS,
    GENERATORS,
    MODELS,
    SEGMENTATION_MODELS,
    count_params,
    create_model,
    layers,
)

# Trainable parameters at (10, 100) classes. The CIFAR zoo's values equal the original PyTorch
# networks' (ResNet-18 11,173,962, WRN-40-2 2,243,546, ...); test_torch_import checks every entry
# against the PyTorch twins in fastdfkd_jax/models/torch_twins.py.
KNOWN_PARAMS = {
    "resnet18": (11_173_962, 11_220_132),
    "resnet34": (21_282_122, 21_328_292),
    "wrn16_1": (175_066, 180_916),
    "wrn16_2": (691_674, 703_284),
    "wrn40_1": (563_930, 569_780),
    "wrn40_2": (2_243_546, 2_255_156),
    "vgg11_bn": (9_231_114, 9_277_284),
    "resnet8": (78_042, 83_892),
    "resnet20": (272_474, 278_324),
    "wrn10_1": (77_850, 83_700),
    "digits_cnn_teacher": (140_458, 152_068),
    "digits_cnn_small": (24_058, 29_908),
    "digits_cnn_tiny": (1_442, 2_972),
    "fmnist_cnn_teacher": (278_890, 290_500),
    "fmnist_cnn_medium": (94_186, 105_796),
    "fmnist_cnn_small": (24_058, 29_908),
    "fmnist_cnn_tiny": (6_274, 9_244),
    "fmnist_resnet8": (77_754, 83_604),
    "resnet18_imagenet": (11_181_642, 11_227_812),
    "resnet34_imagenet": (21_289_802, 21_335_972),
    "resnet50_imagenet": (23_528_522, 23_712_932),
    "mobilenetv2_imagenet": (2_236_682, 2_351_972),
}
# torchvision's published parameter counts at 1000 classes.
TORCHVISION_PARAMS = {
    "resnet18_imagenet": 11_689_512,
    "resnet34_imagenet": 21_797_672,
    "resnet50_imagenet": 25_557_032,
    "mobilenetv2_imagenet": 3_504_872,
}
# Segmentation models at (13, 21) classes, as counted on the PyTorch twins (test_torch_import).
# torchvision's deeplabv3_resnet50 publishes 42,004,074 at 21 classes with its auxiliary FCN head
# (2,365,205 parameters), which we leave out: 42,004,074 - 2,365,205 = 39,638,869.
SEGMENTATION_PARAMS = {
    "deeplabv3_resnet50": (39_636_813, 39_638_869),
    "deeplabv3_mobilenet": (5_111_821, 5_113_877),
    # Ours, for smoke runs (no reference): 3 backbone + 4 ASPP-branch + projection + head convs,
    # each 8 wide with BatchNorm, and the 1x1 classifier.
    "deeplabv3_tiny": (4_397, 4_469),
}
# Generators: (overrides, latent shape, image shape, parameters). The 32x32 and ImageNet counts are
# those of the original's Generator(nz=256) and DeepGenerator(nz=256) (without its unused `l1`).
GENERATOR_CASES = [
    ("generator", {}, (256,), (32, 32, 3), 2_328_899),
    ("generator", {"img_size": 28, "nc": 1}, (256,), (28, 28, 1), 1_834_305),
    ("generator", {"img_size": 8, "nc": 1}, (256,), (8, 8, 1), 353_985),
    ("generator_imagenet", {}, (14, 14, 256), (224, 224, 3), 592_451),
]


def input_shape(name: str, batch: int = 2) -> tuple[int, int, int, int]:
    """The image shape each classifier is meant for."""
    if name.startswith("digits"):
        return (batch, 8, 8, 1)
    if name.startswith("fmnist"):
        return (batch, 28, 28, 1)
    return (batch, 32, 32, 3)


def abstract_init(model, shape):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def test_registry_is_complete():
    assert set(CLASSIFIERS) == set(KNOWN_PARAMS)
    assert set(GENERATORS) == {"generator", "generator_imagenet"}
    assert set(SEGMENTATION_MODELS) == set(SEGMENTATION_PARAMS)
    assert set(MODELS) == set(CLASSIFIERS) | set(SEGMENTATION_MODELS) | set(GENERATORS)


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="resnet34.*wrn40_2|wrn40_2.*resnet34") as info:
        create_model("resnet1000", num_classes=10)
    assert "resnet1000" in str(info.value)
    for name in MODELS:
        assert name in str(info.value)


def test_num_classes_checks():
    with pytest.raises(ValueError, match="needs num_classes"):
        create_model("resnet8")
    with pytest.raises(ValueError, match="takes no num_classes"):
        create_model("generator", num_classes=10)


def test_overrides_reach_the_module():
    model = create_model("wrn16_1", num_classes=10, depth=10)
    assert isinstance(model, models.WideResNet) and model.depth == 10
    assert model.num_classes == 10


def test_count_params():
    tree = {"a": np.zeros((3, 4)), "b": {"c": np.zeros(5), "d": jax.ShapeDtypeStruct((2, 2), "f")}}
    assert count_params(tree) == 21
    assert count_params({}) == 0


@pytest.mark.parametrize("name", sorted(KNOWN_PARAMS))
def test_param_counts_and_output_shape(name):
    for num_classes, expected in zip((10, 100), KNOWN_PARAMS[name], strict=True):
        model = create_model(name, num_classes=num_classes)
        shape = input_shape(name)
        variables = abstract_init(model, shape)
        assert count_params(variables["params"]) == expected
        # Every BN has running statistics.
        assert jax.tree.leaves(variables["batch_stats"])
        logits = jax.eval_shape(
            lambda v, m=model, s=shape: m.apply(v, jnp.zeros(s), train=False), variables
        )
        assert logits.shape == (shape[0], num_classes)


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_imagenet_param_counts_equal_torchvision(name):
    variables = abstract_init(create_model(name, num_classes=1000), (1, 224, 224, 3))
    assert count_params(variables["params"]) == TORCHVISION_PARAMS[name]


def test_imagenet_stem_and_feature_maps():
    """224 -> 112 (stem) -> 56 (pool) -> ... -> 7; dilation keeps layers 3-4 at stride 8."""
    shapes = {
        ("resnet18_imagenet", ()): (1, 7, 7, 512),
        ("resnet50_imagenet", ()): (1, 7, 7, 2048),
        ("resnet50_imagenet", (False, True, True)): (1, 28, 28, 2048),
        ("resnet50_imagenet", (False, False, True)): (1, 14, 14, 2048),
    }
    for (name, dilate), expected in shapes.items():
        overrides = {"include_head": False}
        if dilate:
            overrides["replace_stride_with_dilation"] = dilate
        model = create_model(name, num_classes=1000, **overrides)
        x = jnp.zeros((1, 224, 224, 3))
        variables = abstract_init(model, x.shape)
        out = jax.eval_shape(lambda v, m=model, x=x: m.apply(v, x, train=False), variables)
        assert out.shape == expected, name
    mobilenet = create_model("mobilenetv2_imagenet", num_classes=10, include_head=False)
    variables = abstract_init(mobilenet, (1, 224, 224, 3))
    out = jax.eval_shape(
        lambda v: mobilenet.apply(v, jnp.zeros((1, 224, 224, 3)), train=False), variables
    )
    assert out.shape == (1, 7, 7, 320)
    with pytest.raises(ValueError, match="Dilation needs Bottleneck"):
        abstract_init(
            create_model(
                "resnet18_imagenet", num_classes=10, replace_stride_with_dilation=(0, 1, 1)
            ),
            (1, 32, 32, 3),
        )


@pytest.mark.parametrize("name", sorted(SEGMENTATION_PARAMS))
def test_segmentation_param_counts_and_output_shape(name):
    for num_classes, expected in zip((13, 21), SEGMENTATION_PARAMS[name], strict=True):
        model = create_model(name, num_classes=num_classes)
        # Odd sizes: the logits are resized back to the input's size.
        shape = (2, 33, 47, 3)
        variables = abstract_init(model, shape)
        assert count_params(variables["params"]) == expected
        out = jax.eval_shape(
            lambda v, m=model: m.apply(v, jnp.zeros(shape), train=False), variables
        )
        assert out.shape == (2, 33, 47, num_classes)


def test_segmentation_bad_fields():
    with pytest.raises(ValueError, match="backbone must be one of.*'vgg'"):
        abstract_init(
            create_model("deeplabv3_resnet50", num_classes=13, backbone="vgg"), (1, 32, 32, 3)
        )
    with pytest.raises(ValueError, match="output_stride must be one of.*32"):
        abstract_init(
            create_model("deeplabv3_mobilenet", num_classes=13, output_stride=32), (1, 32, 32, 3)
        )
    with pytest.raises(ValueError, match="padding must be one of.*'same'"):
        abstract_init(
            create_model("mobilenetv2_imagenet", num_classes=10, padding="same"), (1, 32, 32, 3)
        )


@pytest.mark.parametrize("size", [(4, 6), (9, 13), (18, 26), (5, 20)])
def test_resize_bilinear_known_values(size):
    """Half-pixel bilinear on a linear ramp is exact inside, clamped at the borders (torch's)."""
    h, w = 9, 13
    ramp = jnp.broadcast_to(jnp.arange(w, dtype=jnp.float32)[:, None], (1, h, w, 1))
    out = np.asarray(layers.resize_bilinear(ramp, size))[0, 0, :, 0]
    centers = (np.arange(size[1]) + 0.5) * w / size[1] - 0.5
    np.testing.assert_allclose(out, np.clip(centers, 0, w - 1), atol=1e-5)


@pytest.mark.parametrize("name", ["resnet8", "wrn10_1", "digits_cnn_tiny", "fmnist_cnn_small"])
def test_any_channels_and_size(name):
    """Flax infers input channels; GAP heads accept any spatial size."""
    model = create_model(name, num_classes=10)
    for shape in [(2, 8, 8, 1), (2, 28, 28, 1), (2, 32, 32, 3)]:
        variables = abstract_init(model, shape)
        out = jax.eval_shape(
            lambda v, s=shape: model.apply(v, jnp.zeros(s), train=False), variables
        )
        assert out.shape == (2, 10)


def test_vgg_and_cifar_resnet_on_other_inputs():
    """The big models also run (abstractly) on 28x28x1 inputs."""
    for name in ("vgg11_bn", "resnet18", "wrn16_2"):
        model = create_model(name, num_classes=10)
        variables = abstract_init(model, (2, 28, 28, 1))
        out = jax.eval_shape(
            lambda v, m=model: m.apply(v, jnp.zeros((2, 28, 28, 1)), train=False), variables
        )
        assert out.shape == (2, 10)


@pytest.mark.parametrize("name", ["digits_cnn_small", "wrn10_1"])
def test_batchnorm_train_and_eval(name):
    model = create_model(name, num_classes=10)
    x = jax.random.normal(jax.random.key(1), input_shape(name, batch=4)) * 2.0 + 1.0
    variables = model.init(jax.random.key(0), x, train=False)

    _, eval_update = model.apply(variables, x, train=False, mutable=["batch_stats"])
    chex_equal = jax.tree.map(np.array_equal, eval_update["batch_stats"], variables["batch_stats"])
    assert all(jax.tree.leaves(chex_equal))

    _, train_update = model.apply(variables, x, train=True, mutable=["batch_stats"])
    changed = jax.tree.map(
        lambda a, b: not np.allclose(a, b), train_update["batch_stats"], variables["batch_stats"]
    )
    assert all(jax.tree.leaves(changed))

    # Eval mode is per-example: an example's logits do not depend on the rest of the batch.
    full = model.apply(variables, x, train=False)
    single = model.apply(variables, x[:1], train=False)
    np.testing.assert_allclose(full[:1], single, atol=1e-5)
    # Train mode normalizes with batch statistics, so the batch matters.
    full_t, _ = model.apply(variables, x, train=True, mutable=["batch_stats"])
    half_t, _ = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])
    assert not np.allclose(full_t[:2], half_t, atol=1e-4)


@pytest.mark.parametrize("case", GENERATOR_CASES, ids=lambda c: f"{c[0]}_{c[3]}")
def test_generator_param_counts(case):
    name, overrides, latent, _, expected = case
    model = create_model(name, **overrides)
    assert model.latent_shape == latent
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, *latent))))
    assert count_params(variables["params"]) == expected


@pytest.mark.parametrize(
    "name, overrides, image_shape",
    [
        ("generator", {"img_size": 8, "nc": 1, "nz": 16, "ngf": 8}, (8, 8, 1)),
        ("generator", {"img_size": 28, "nc": 1, "nz": 16, "ngf": 8}, (28, 28, 1)),
        ("generator", {"nz": 16, "ngf": 8}, (32, 32, 3)),
        ("generator_imagenet", {"latent_size": 2, "nz": 16, "ngf": 8}, (32, 32, 3)),
    ],
)
def test_generator_output(name, overrides, image_shape):
    model = create_model(name, **overrides)
    z = jax.random.normal(jax.random.key(0), (3, *model.latent_shape)) * 3.0
    variables = model.init(jax.random.key(1), z)
    images, update = model.apply(variables, z, train=True, mutable=["batch_stats"])
    assert images.shape == (3, *image_shape)
    assert model.img_size == image_shape[0]
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    assert float(images.std()) > 0.0
    assert set(update) == {"batch_stats"}
    # Batch statistics always: `train` makes no difference.
    images_eval, _ = model.apply(variables, z, train=False, mutable=["batch_stats"])
    np.testing.assert_array_equal(images, images_eval)


def test_generator_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible by 4"):
        create_model("generator", img_size=30).init(jax.random.key(0), jnp.zeros((2, 256)))
    with pytest.raises(ValueError, match="z must have shape"):
        create_model("generator").init(jax.random.key(0), jnp.zeros((2, 100)))
    with pytest.raises(ValueError, match="z must have shape"):
        create_model("generator_imagenet", latent_size=2).init(
            jax.random.key(0), jnp.zeros((2, 3, 3, 256))
        )


def test_depth_validation():
    with pytest.raises(ValueError, match="6n \\+ 4"):
        abstract_init(create_model("wrn16_1", num_classes=10, depth=15), (1, 8, 8, 1))
    with pytest.raises(ValueError, match="6n \\+ 2"):
        abstract_init(create_model("resnet8", num_classes=10, depth=9), (1, 8, 8, 1))


# -- compute dtype (the `bfloat16` precision policy) ----------------------------------------------
def small_instance(name, dtype):
    """`name` built with `dtype`, and an input of the smallest size it is meant for."""
    if name in GENERATORS:
        overrides = {"latent_size": 2, "nz": 8} if name == "generator_imagenet" else {"nz": 8}
        model = create_model(name, dtype=dtype, **overrides)
        return model, jnp.zeros((2, *model.latent_shape))
    model = create_model(name, num_classes=5, dtype=dtype)
    if name in SEGMENTATION_MODELS or name.endswith("_imagenet"):
        return model, jnp.zeros((2, 64, 64, 3))
    return model, jnp.zeros(input_shape(name))


def heavy_ops(jaxpr):
    """Every convolution and dot in `jaxpr`, its sub-jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("conv_general_dilated", "dot_general"):
            found.append(eqn)
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    found += heavy_ops(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    found += heavy_ops(sub)
    return found


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_computes_in_its_dtype_with_float32_parameters(name):
    model, x = small_instance(name, jnp.bfloat16)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}

    def forward(v, x):
        return model.apply(v, x, train=True, mutable=["batch_stats"])

    closed = jax.make_jaxpr(forward)(variables, x)
    ops = heavy_ops(closed.jaxpr)
    assert ops, name
    operand_dtypes = {str(v.aval.dtype) for eqn in ops for v in eqn.invars}
    assert operand_dtypes == {"bfloat16"}, (name, operand_dtypes)
    out, updates = jax.eval_shape(forward, variables, x)
    assert out.dtype == jnp.bfloat16
    # Running statistics stay float32 (Flax reduces BatchNorm statistics in float32).
    assert {leaf.dtype for leaf in jax.tree.leaves(updates)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name", ["wrn16_1", "digits_cnn_small", "generator"])
def test_bfloat16_model_is_close_to_float32(name):
    """Same parameters, bfloat16 computation: outputs within bfloat16's rounding (8-bit mantissa)."""
    model32, x = small_instance(name, jnp.float32)
    model16, _ = small_instance(name, jnp.bfloat16)
    if name in GENERATORS:
        x = jax.random.normal(jax.random.key(1), (8, *x.shape[1:]))
    else:
        x = jax.random.normal(jax.random.key(1), x.shape)
    variables = model32.init(jax.random.key(0), x, train=False)
    out32, _ = model32.apply(variables, x, train=True, mutable=["batch_stats"])
    out16, _ = model16.apply(variables, x, train=True, mutable=["batch_stats"])
    scale = float(jnp.abs(out32).max())
    np.testing.assert_allclose(np.float32(out16), out32, atol=0.05 * scale)
    assert not np.array_equal(np.float32(out16), out32)  # it did compute in bfloat16


def test_dtype_needs_a_dtype_field(monkeypatch):
    class NoDtype(nn.Module):
        num_classes: int = 10

    monkeypatch.setitem(MODELS, "no_dtype", NoDtype)
    assert create_model("no_dtype", num_classes=3).num_classes == 3  # None: the model's default
    with pytest.raises(ValueError, match="'no_dtype' has no dtype field"):
        create_model("no_dtype", num_classes=3, dtype=jnp.bfloat16)


@pytest.mark.parametrize("shape", [(3, 8, 8, 4), (2, 7, 9, 3)])
@pytest.mark.parametrize("ties", [False, True])
def test_max_pool_2x2_equals_reduce_window_and_its_gradient(shape, ties):
    """The written-out pool: reduce_window's values and gradient, ties included (the first
    maximum of a window gets the gradient, as select-and-scatter and torch give it); odd sizes
    floor, as torch."""
    x = jax.random.normal(jax.random.key(0), shape)
    if ties:  # few distinct values, many of them equal within a window
        x = jnp.round(jnp.maximum(x, 0.0))

    def reference(x):
        return nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")

    np.testing.assert_array_equal(layers.max_pool_2x2(x), reference(x))
    cotangent = jax.random.normal(jax.random.key(1), reference(x).shape)
    grad = jax.grad(lambda x: jnp.vdot(layers.max_pool_2x2(x), cotangent))(x)
    want = jax.grad(lambda x: jnp.vdot(reference(x), cotangent))(x)
    np.testing.assert_array_equal(grad, want)


def test_models_by_import_path():
    """`package.module:ClassName` names a user's model (big_vision style); errors name the path."""
    from fastdfkd_jax import models as zoo
    from tests.fastdfkd_jax import tiny

    model = zoo.create_model("tests.fastdfkd_jax.tiny:TinyNet", num_classes=10)
    assert isinstance(model, tiny.TinyNet) and model.num_classes == 10
    zoo.check_classifier_name("tests.fastdfkd_jax.tiny:TinyNet")
    zoo.check_classifier_name("resnet18")
    with pytest.raises(ValueError, match=r"cannot import 'no_such_package\.nets'"):
        zoo.create_model("no_such_package.nets:Net", num_classes=10)
    with pytest.raises(ValueError, match=r"'tests.fastdfkd_jax.tiny' has no 'Missing'"):
        zoo.check_classifier_name("tests.fastdfkd_jax.tiny:Missing")
    with pytest.raises(ValueError, match="or name a model by import path"):
        zoo.check_classifier_name("resnet1000")


@pytest.mark.slow  # a teacher and a distillation run end to end: about a minute
def test_a_model_named_by_import_path_through_the_cli(tmp_path):
    """A teacher trained and a student distilled, both a model of the user's named by import path
    with constructor arguments (`kwargs`); the model directories record both.
    """
    import json
    import subprocess
    import sys

    from tests.conftest import REPO

    arch = "tests.fastdfkd_jax.tiny:TinyNet"
    common = ["--config.progress_bar=False", "--config.compilation_cache=False"]
    subprocess.run(
        [sys.executable, "-m", "fastdfkd_jax.main", "--config=configs/teacher_digits.py:runlocal",
         f"--workdir={tmp_path / 'teacher'}", f"--config.model.arch={arch}",
         "--config.model.kwargs={'width': 4}", *common],
        check=True, cwd=REPO, capture_output=True, timeout=600,
    )  # fmt: skip
    teacher_dir = tmp_path / "teacher" / "teacher"
    meta = json.loads((teacher_dir / "meta.json").read_text())
    assert meta["arch"] == arch and meta["kwargs"] == {"width": 4}
    subprocess.run(
        [sys.executable, "-m", "fastdfkd_jax.main", "--config=configs/dfkd_digits.py:runlocal",
         f"--workdir={tmp_path / 'dfkd'}", f"--config.teacher.checkpoint={teacher_dir}",
         f"--config.teacher.arch={arch}", "--config.teacher.kwargs={'width': 4}",
         f"--config.student.arch={arch}", "--config.student.kwargs={'width': 2}", *common],
        check=True, cwd=REPO, capture_output=True, timeout=600,
    )  # fmt: skip
    summary = json.loads((tmp_path / "dfkd" / "summary.json").read_text())
    assert 0.0 <= summary["student_test_accuracy"] <= 1.0
    student = json.loads((tmp_path / "dfkd" / "student" / "meta.json").read_text())
    assert student["arch"] == arch and student["kwargs"] == {"width": 2}
