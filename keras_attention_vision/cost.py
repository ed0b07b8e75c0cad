"""Multiply-adds of one forward pass: what a model costs per image, counted.

`multiply_adds(model)` counts the multiply-adds (MACs) of one example's
forward pass (inference: `training=False`) layer by layer, from the shapes
the model's layers were called with:

- `Dense`: `prod(input_shape[1:-1]) * in_features * units`;
- `Conv1D/2D/3D` (and subclasses such as `MaskedConv2D`): `prod(output
  spatial) * prod(kernel_size) * in_channels / groups * filters`;
  `DepthwiseConv2D`: `prod(output spatial) * prod(kernel_size) *
  in_channels * depth_multiplier`; `SeparableConv2D`: its depthwise part plus
  a 1x1 convolution; `Conv2DTranspose`: `prod(input spatial) *
  prod(kernel_size) * in_channels * filters`;
- a layer or model with a `multiply_adds()` method (e.g.
  `RecurrentAttentionModel`) reports its own count;
- nested models are counted through their layers;
- layers without a kernel (activations, pooling, normalisation, additions,
  reshapes) count 0: element-wise work is not a multiply-add here, so a
  figure is the cost of the matmuls and convolutions, the part that scales.

A layer that has a `kernel` but none of the rules above raises a
`ValueError` naming it, rather than being counted as free.

Example:

```python
import keras
from keras_attention_vision.cost import multiply_adds

model = keras.Sequential([keras.Input((28, 28, 1)),
                          keras.layers.Conv2D(8, 3),       # 26*26*9*1*8 = 48,672
                          keras.layers.Flatten(),
                          keras.layers.Dense(10)])         # 5,408*10 = 54,080
multiply_adds(model)  # 102,752
```
"""

import math

import keras

#: Layer classes that hold weights but do no multiply-add per the rules above
#: (scale-and-shift or table lookups).
NO_MULTIPLY_ADDS = (
    keras.layers.BatchNormalization,
    keras.layers.LayerNormalization,
    keras.layers.GroupNormalization,
    keras.layers.Embedding,
)


def _spatial(shape, data_format, rank):
    shape = tuple(shape)
    if data_format == "channels_first":
        return shape[2:2 + rank], shape[1]
    return shape[1:1 + rank], shape[-1]


def _conv_multiply_adds(layer, input_shape, output_shape):
    rank = len(layer.kernel_size)
    out_spatial, out_channels = _spatial(output_shape, layer.data_format, rank)
    in_spatial, in_channels = _spatial(input_shape, layer.data_format, rank)
    window = math.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.SeparableConv2D):
        depthwise = math.prod(out_spatial) * window * in_channels * layer.depth_multiplier
        return depthwise + math.prod(out_spatial) * in_channels * \
            layer.depth_multiplier * out_channels
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return math.prod(out_spatial) * window * in_channels * layer.depth_multiplier
    if isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                          keras.layers.Conv3DTranspose)):
        return math.prod(in_spatial) * window * in_channels * out_channels
    groups = getattr(layer, "groups", 1)
    return math.prod(out_spatial) * window * (in_channels // groups) * out_channels


def layer_multiply_adds(layer, input_shape, output_shape):
    """Multiply-adds of one call of `layer` on one example.

    Args:
        layer: a built Keras layer.
        input_shape, output_shape: the call's shapes, batch axis first (its
            size is ignored; the count is per example).

    Returns:
        An int.

    Raises:
        ValueError: a layer with a `kernel` that no rule covers.
    """
    if hasattr(layer, "multiply_adds") and callable(layer.multiply_adds):
        return int(layer.multiply_adds())
    if isinstance(layer, keras.layers.Dense):
        return math.prod(input_shape[1:-1]) * input_shape[-1] * layer.units
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
                          keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D,
                          keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose,
                          keras.layers.Conv3DTranspose)):
        return _conv_multiply_adds(layer, input_shape, output_shape)
    if isinstance(layer, NO_MULTIPLY_ADDS) or not hasattr(layer, "kernel"):
        return 0
    raise ValueError(
        f"Cannot count the multiply-adds of layer {layer.name!r} "
        f"({type(layer).__name__}): give it a `multiply_adds()` method. "
        f"Received: input_shape={tuple(input_shape)}")


def multiply_adds(model):
    """Multiply-adds of one example's forward pass through `model`.

    Args:
        model: a built functional or `Sequential` model (layers are counted
            from the shapes they were called with), or any layer or model
            with a `multiply_adds()` method.

    Returns:
        An int: the multiply-adds per example (see the module docstring for
        what counts).

    Raises:
        ValueError: `model` is not built, or holds a layer no rule covers.
    """
    if hasattr(model, "multiply_adds") and callable(model.multiply_adds):
        return int(model.multiply_adds())
    if not getattr(model, "built", False):
        raise ValueError(f"Build the model first (call it or give it an Input). "
                         f"Received: model={model.name!r}, built=False")
    graph = _graph_nodes(model)
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model) and not hasattr(layer, "multiply_adds"):
            total += multiply_adds(layer)
            continue
        for node in _inbound_nodes(layer, graph):
            total += layer_multiply_adds(layer, _shape(node.input_tensors),
                                         _shape(node.output_tensors))
    return total


def _graph_nodes(model):
    """The node keys of `model`'s own graph (`None`: not a graph model)."""
    functional = getattr(model, "_functional", None) or model
    return getattr(functional, "_nodes", None)


def _inbound_nodes(layer, graph):
    """The calls of `layer` that belong to the graph (not to other models)."""
    nodes = [node for i, node in enumerate(getattr(layer, "_inbound_nodes", []))
             if graph is None or f"{id(layer)}_ib-{i}" in graph]
    if not nodes:
        raise ValueError(f"Layer {layer.name!r} was never called on a symbolic input, "
                         "so its shapes are unknown. Build the model from "
                         "`keras.Input`.")
    return nodes


def _shape(tensors):
    tensors = keras.tree.flatten(tensors)
    return tuple(tensors[0].shape)


__all__ = ["layer_multiply_adds", "multiply_adds"]
