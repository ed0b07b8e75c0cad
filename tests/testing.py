"""The shared layer harness: every layer of the package passes through it.

`run_layer_test` checks, for a layer class, its init kwargs and an input:

1. `get_config` / `from_config` round trip, and every init kwarg is in the config;
2. symbolic call and `compute_output_shape` agree with the eager output;
3. a model holding the layer, saved as `.keras` and loaded with
   `safe_mode=True` (no custom objects), gives identical outputs (the weights
   are perturbed first, so zero-initialised weights cannot hide a loss);
4. one `fit` step changes the trainable weights and leaves them finite;
5. under `mixed_float16` the layer keeps float32 variables and gives finite
   outputs in the compute dtype.

`assert_channels_first_matches_last` checks that both data formats give the
same numbers with the same weights.

Example:

```python
from tests.testing import run_layer_test

def test_harness():
    run_layer_test(NonLocalBlock, {"mode": "dot_product"}, np.ones((2, 4, 4, 8)))
```
"""

import os
import tempfile
import unittest

import keras
import numpy as np
from keras import ops

RNG_SEED = 1234


def to_numpy(x):
    """Converts a backend tensor (or a nest of them) to NumPy."""
    return keras.tree.map_structure(ops.convert_to_numpy, x)


def _as_list(data):
    if isinstance(data, (list, tuple)):
        return list(data), True
    return [data], False


def _symbolic_inputs(arrays):
    return [
        keras.Input(shape=a.shape[1:], dtype=str(np.asarray(a).dtype)) for a in arrays
    ]


def _call(layer, inputs, is_list, call_kwargs):
    return layer(inputs if is_list else inputs[0], **call_kwargs)


def _flat(outputs):
    return keras.tree.flatten(outputs)


def perturb_weights(target, seed=RNG_SEED):
    """Moves every float weight of a layer or model off its initial value.

    Zero-initialised gammas and identity-initialised blocks would otherwise
    make a lost weight invisible in the outputs. Values are scaled by
    U(0.9, 1.1) and shifted by U(-0.1, 0.1), so variances stay positive.
    """
    rng = np.random.default_rng(seed)
    for variable in target.weights:
        if not str(variable.dtype).startswith(("float", "bfloat")):
            continue
        value = ops.convert_to_numpy(variable).astype("float64")
        value = value * rng.uniform(0.9, 1.1, value.shape)
        value = value + rng.uniform(-0.1, 0.1, value.shape)
        variable.assign(value.astype(str(variable.dtype)))


def assert_config_round_trip(layer_cls, init_kwargs):
    """Checks `get_config` keeps every init kwarg and survives `from_config`."""
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    for key, value in init_kwargs.items():
        assert key in config, (
            f"{layer_cls.__name__}.get_config() lacks the init argument {key!r}."
        )
        restored = config[key]
        if isinstance(value, (list, tuple)) and isinstance(restored, (list, tuple)):
            value, restored = list(value), list(restored)
        if not isinstance(value, (keras.layers.Layer, keras.initializers.Initializer)):
            assert restored == value or isinstance(restored, dict), (
                f"{layer_cls.__name__}.get_config()[{key!r}] is {restored!r}; "
                f"the layer was built with {value!r}."
            )
    clone = layer_cls.from_config(config)
    assert clone.get_config() == config, (
        f"{layer_cls.__name__}: from_config(get_config()) gives a different config:"
        f"\n{clone.get_config()}\n!=\n{config}"
    )


def assert_shapes_agree(layer_cls, init_kwargs, input_data, call_kwargs=None):
    """Checks symbolic call and `compute_output_shape` against the eager call."""
    call_kwargs = call_kwargs or {}
    arrays, is_list = _as_list(input_data)
    layer = layer_cls(**init_kwargs)
    eager = _flat(_call(layer, [ops.convert_to_tensor(a) for a in arrays], is_list,
                        call_kwargs))
    eager_shapes = [tuple(ops.shape(t)) for t in eager]

    symbolic = _flat(_call(layer_cls(**init_kwargs), _symbolic_inputs(arrays), is_list,
                           call_kwargs))
    assert len(symbolic) == len(eager), (
        f"{layer_cls.__name__}: symbolic call gives {len(symbolic)} outputs, "
        f"eager call {len(eager)}."
    )
    for sym, shape in zip(symbolic, eager_shapes):
        expected = (None,) + shape[1:]
        assert tuple(sym.shape) == expected, (
            f"{layer_cls.__name__}: symbolic output shape {tuple(sym.shape)} != "
            f"eager output shape {expected} (batch left open)."
        )

    input_shapes = [tuple(a.shape) for a in arrays]
    computed = layer.compute_output_shape(input_shapes if is_list else input_shapes[0])
    computed = _shape_list(computed)
    assert computed == eager_shapes, (
        f"{layer_cls.__name__}.compute_output_shape({input_shapes}) gives {computed}; "
        f"the eager call gives {eager_shapes}."
    )


def _is_shape(value):
    return isinstance(value, (tuple, list)) and all(
        d is None or isinstance(d, int) for d in value
    )


def _shape_list(shapes):
    """Flattens a nest of shapes (tuple, list or dict) into a list of tuples."""
    if _is_shape(shapes):
        return [tuple(shapes)]
    if isinstance(shapes, dict):
        shapes = list(shapes.values())
    return [s for item in shapes for s in _shape_list(item)]


def _model_of(layer, arrays, is_list, call_kwargs):
    inputs = _symbolic_inputs(arrays)
    outputs = _call(layer, inputs, is_list, call_kwargs)
    return keras.Model(inputs if is_list else inputs[0], outputs)


def _feed(arrays, is_list):
    return arrays if is_list else arrays[0]


def assert_saving_round_trip(layer_cls, init_kwargs, input_data, call_kwargs=None,
                             atol=1e-6):
    """Checks a `.keras` save/load (`safe_mode=True`) reproduces the outputs."""
    call_kwargs = call_kwargs or {}
    arrays, is_list = _as_list(input_data)
    model = _model_of(layer_cls(**init_kwargs), arrays, is_list, call_kwargs)
    perturb_weights(model)
    before = to_numpy(_flat(model(_feed(arrays, is_list), training=False)))
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    after = to_numpy(_flat(loaded(_feed(arrays, is_list), training=False)))
    for b, a in zip(before, after):
        np.testing.assert_allclose(
            a, b, atol=atol, rtol=0,
            err_msg=f"{layer_cls.__name__}: outputs differ after .keras save/load.",
        )


def assert_fit_step_trains(layer_cls, init_kwargs, input_data, call_kwargs=None):
    """Checks one `fit` step on an MSE target changes the trainable weights."""
    call_kwargs = call_kwargs or {}
    arrays, is_list = _as_list(input_data)
    layer = layer_cls(**init_kwargs)
    model = _model_of(layer, arrays, is_list, call_kwargs)
    model = keras.Model(model.inputs if is_list else model.inputs[0],
                        _flat(model.outputs)[0])
    assert layer.trainable_weights, f"{layer_cls.__name__} has no trainable weights."
    before = [ops.convert_to_numpy(w).copy() for w in layer.trainable_weights]
    target_shape = (arrays[0].shape[0],) + tuple(model.outputs[0].shape[1:])
    target = np.random.default_rng(RNG_SEED).normal(size=target_shape).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    try:
        model.fit(_feed(arrays, is_list), target, batch_size=arrays[0].shape[0],
                  epochs=1, verbose=0, shuffle=False)
    except (ValueError, RuntimeError) as error:  # TF, JAX / torch wordings
        if "grad" not in str(error).lower():
            raise
        raise AssertionError(f"{layer_cls.__name__}: fit step failed: {error}") from error
    after = [ops.convert_to_numpy(w) for w in layer.trainable_weights]
    for w, a in zip(layer.trainable_weights, after):
        assert np.all(np.isfinite(a)), f"{layer_cls.__name__}: {w.path} is not finite."
    changed = [w.path for w, b, a in zip(layer.trainable_weights, before, after)
               if not np.array_equal(b, a)]
    assert changed, (
        f"{layer_cls.__name__}: one fit step changed none of the trainable weights "
        f"{[w.path for w in layer.trainable_weights]}."
    )


def assert_mixed_precision(layer_cls, init_kwargs, input_data, call_kwargs=None,
                           output_dtype="float16"):
    """Checks the layer under `mixed_float16`: float32 variables, finite outputs."""
    call_kwargs = call_kwargs or {}
    arrays, is_list = _as_list(input_data)
    layer = layer_cls(**init_kwargs, dtype="mixed_float16")
    outputs = _call(layer, [ops.convert_to_tensor(a) for a in arrays], is_list,
                    call_kwargs)
    for variable in layer.weights:
        if str(variable.dtype).startswith("float"):
            assert str(variable.dtype) == "float32", (
                f"{layer_cls.__name__}: variable {variable.path} is {variable.dtype} "
                "under mixed_float16; variables must stay float32."
            )
    first = _flat(outputs)[0]
    if output_dtype is not None:
        assert keras.backend.standardize_dtype(first.dtype) == output_dtype, (
            f"{layer_cls.__name__}: output dtype {first.dtype} under mixed_float16, "
            f"expected {output_dtype}."
        )
    for out in to_numpy(_flat(outputs)):
        if np.issubdtype(out.dtype, np.floating):
            assert np.all(np.isfinite(out.astype("float32"))), (
                f"{layer_cls.__name__}: NaN or inf under mixed_float16."
            )


def assert_compiles_with_xla(layer_cls, init_kwargs, input_data, call_kwargs=None,
                             atol=1e-4):
    """Checks the layer compiles with XLA and gives its eager outputs.

    TensorFlow: the call inside `tf.function(jit_compile=True)`; JAX: the
    layer's `stateless_call` inside `jax.jit`. Static shapes and no Python
    control flow on tensor values are what XLA (and TPUs) need. PyTorch: not
    applicable (nothing is checked).
    """
    backend = keras.backend.backend()
    if backend not in ("tensorflow", "jax"):
        return
    call_kwargs = call_kwargs or {}
    arrays, is_list = _as_list(input_data)
    layer = layer_cls(**init_kwargs)
    tensors = [ops.convert_to_tensor(a) for a in arrays]
    eager = to_numpy(_flat(_call(layer, tensors, is_list, call_kwargs)))
    if backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(
            lambda *t: _flat(_call(layer, list(t), is_list, call_kwargs)),
            jit_compile=True)(*tensors)
    else:
        import jax

        def stateless(trainable, non_trainable, *t):
            outputs, _ = layer.stateless_call(trainable, non_trainable,
                                              list(t) if is_list else t[0], **call_kwargs)
            return _flat(outputs)

        compiled = jax.jit(stateless)([v.value for v in layer.trainable_variables],
                                      [v.value for v in layer.non_trainable_variables],
                                      *tensors)
    compiled = to_numpy(compiled)
    assert len(compiled) == len(eager)
    for a, b in zip(compiled, eager):
        np.testing.assert_allclose(a, b, atol=atol, rtol=atol,
                                   err_msg=f"{layer_cls.__name__} under XLA")


def run_layer_test(layer_cls, init_kwargs, input_data, call_kwargs=None,
                   run_saving=True, run_fit=True, run_mixed_precision=True,
                   mixed_precision_output_dtype="float16", saving_atol=1e-6):
    """Runs every harness check on one layer configuration.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments (no `dtype`).
        input_data: a NumPy array, or a list of arrays for multi-input layers.
        call_kwargs: extra keyword arguments of `call`.
        run_saving, run_fit, run_mixed_precision: switch single checks off;
            say why at the call site.
        mixed_precision_output_dtype: the dtype the first output must have
            under `mixed_float16` (`None` skips the check).

    Every configuration is also compiled with XLA (`assert_compiles_with_xla`).
        saving_atol: tolerance of the save/load comparison.
    """
    assert_config_round_trip(layer_cls, init_kwargs)
    assert_shapes_agree(layer_cls, init_kwargs, input_data, call_kwargs)
    if run_saving:
        assert_saving_round_trip(layer_cls, init_kwargs, input_data, call_kwargs,
                                 atol=saving_atol)
    if run_fit:
        assert_fit_step_trains(layer_cls, init_kwargs, input_data, call_kwargs)
    if run_mixed_precision:
        assert_mixed_precision(layer_cls, init_kwargs, input_data, call_kwargs,
                               output_dtype=mixed_precision_output_dtype)
    assert_compiles_with_xla(layer_cls, init_kwargs, input_data, call_kwargs)


def _to_first(array):
    return np.moveaxis(np.asarray(array), -1, 1)


def assert_channels_first_matches_last(layer_cls, init_kwargs, input_data,
                                       call_kwargs=None, image_inputs=(0,),
                                       image_outputs=(0,), atol=1e-5):
    """Checks `channels_first` gives the numbers of `channels_last`.

    Both layers share the same (perturbed) weights. `input_data` is given
    channels last; the inputs listed in `image_inputs` and the outputs listed
    in `image_outputs` are moved between the two layouts.
    """
    call_kwargs = call_kwargs or {}
    arrays, is_list = _as_list(input_data)
    first_arrays = [_to_first(a) if i in image_inputs else a
                    for i, a in enumerate(arrays)]
    last = layer_cls(**init_kwargs, data_format="channels_last")
    out_last = _call(last, [ops.convert_to_tensor(a) for a in arrays], is_list,
                     call_kwargs)
    perturb_weights(last)
    out_last = to_numpy(_flat(_call(last, [ops.convert_to_tensor(a) for a in arrays],
                                    is_list, call_kwargs)))
    first = layer_cls(**init_kwargs, data_format="channels_first")
    _call(first, [ops.convert_to_tensor(a) for a in first_arrays], is_list, call_kwargs)
    first.set_weights(last.get_weights())
    out_first = to_numpy(_flat(_call(first,
                                     [ops.convert_to_tensor(a) for a in first_arrays],
                                     is_list, call_kwargs)))
    for i, (a, b) in enumerate(zip(out_last, out_first)):
        if i in image_outputs:
            b = np.moveaxis(b, 1, -1)
        np.testing.assert_allclose(
            b, a, atol=atol, rtol=1e-5,
            err_msg=f"{layer_cls.__name__}: output {i} differs between "
            "channels_first and channels_last.",
        )


class TestCase(unittest.TestCase):
    """Base class for our tests, with the harness as methods (as keras-rs does)."""

    def setUp(self):
        keras.utils.set_random_seed(RNG_SEED)

    def assertAllClose(self, actual, expected, atol=1e-6, rtol=1e-6, msg=""):
        np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), atol=atol,
                                   rtol=rtol, err_msg=msg)

    def run_layer_test(self, *args, **kwargs):
        run_layer_test(*args, **kwargs)

    def assert_channels_first_matches_last(self, *args, **kwargs):
        assert_channels_first_matches_last(*args, **kwargs)
