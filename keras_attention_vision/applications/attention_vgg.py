"""VGG with trainable attention estimators (Jetley et al., "Learn to Pay Attention", 2018).

Also `attach_attention_estimators`, which puts the same attention head on named
layers of any functional backbone, and `attention_maps_model`, which exposes
the attention maps of such a model.
"""


import keras

from keras_attention_vision import presets
from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.attention_estimator import (
    COMPATIBILITIES,
    NORMALIZATIONS,
    AttentionEstimator,
)

AGGREGATIONS = ("concat", "indep")
# The paper's attended layers of VGG-16 (1-based conv indices) and our names.
PAPER_LAYERS = {"att3": (7, 10, 13), "att2": (10, 13)}
# VGG-16's 13 convolutions: (block, index in block, channels at width 1).
_VGG16 = [(1, 1, 64), (1, 2, 64), (2, 1, 128), (2, 2, 128),
          (3, 1, 256), (3, 2, 256), (3, 3, 256),
          (4, 1, 512), (4, 2, 512), (4, 3, 512),
          (5, 1, 512), (5, 2, 512), (5, 3, 512)]
MIN_INPUT_SIZE = 16


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {tuple(choices)}. "
                         f"Received: {name}={value!r}")
    return value


def _attention_head(local_features, global_vector, aggregation, compatibility,
                    normalization, include_top, classes, classifier_activation,
                    data_format=None):
    """Attention estimators on `local_features`, then the concat or indep classifier."""
    attended = []
    for i, local in enumerate(local_features, start=1):
        g_a, _ = AttentionEstimator(compatibility, normalization, data_format=data_format,
                                    name=f"attention_{i}")([local, global_vector])
        attended.append(g_a)

    def concatenate(tensors, name):
        if len(tensors) == 1:
            return tensors[0]
        return keras.layers.Concatenate(name=name)(tensors)

    if not include_top:
        return concatenate(attended, "attended_features")
    if aggregation == "concat":
        x = concatenate(attended, "attended_features")
        return keras.layers.Dense(classes, activation=classifier_activation,
                                  name="predictions")(x)
    scores = [keras.layers.Dense(classes, name=f"scores_{i}")(g_a)
              for i, g_a in enumerate(attended, start=1)]
    x = scores[0] if len(scores) == 1 else keras.layers.Average(name="mean_scores")(scores)
    return keras.layers.Activation(classifier_activation, name="predictions")(x)


def _check_head_arguments(aggregation, compatibility, normalization, classes):
    _check_choice("aggregation", aggregation, AGGREGATIONS)
    _check_choice("compatibility", compatibility, COMPATIBILITIES)
    _check_choice("normalization", normalization, NORMALIZATIONS)
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"`classes` must be a positive int. Received: classes={classes!r}")


def _single(inputs):
    """One input tensor rather than a list of one (so calls need no list)."""
    return inputs[0] if len(inputs) == 1 else inputs


def _conv_bn_relu(x, filters, name):
    x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                            data_format="channels_last", name=name)(x)
    # momentum 0.9: Torch's default (0.1 in its convention), as the paper's Torch VGG;
    # Keras's 0.99 leaves the moving statistics unwarmed after short trainings.
    x = keras.layers.BatchNormalization(axis=-1, momentum=0.9, name=f"{name}_bn")(x)
    return keras.layers.Activation("relu", name=f"{name}_relu")(x)


def _pool(x, name):
    return keras.layers.MaxPooling2D(2, padding="same", data_format="channels_last",
                                     name=name)(x)


@kav_export("keras_attention_vision.applications.AttentionVGG")
@presets.preset_arguments("AttentionVGG")
def AttentionVGG(include_top=True, weights=None, input_tensor=None, input_shape=None,
                 pooling=None, classes=100, classifier_activation="softmax",
                 attention_layers="att3", aggregation="concat", compatibility="pc",
                 normalization="softmax", width_multiplier=1.0, name=None):
    """VGG-att2 / VGG-att3 of "Learn to Pay Attention" (Jetley et al., 2018).

    The backbone is VGG-16 (13 convolutions, each followed by batch
    normalisation (momentum 0.9) and ReLU) with its first two max-pools removed, so that at
    the paper's 32x32 input the attended layers keep a useful resolution:
    layer 7 (`block3_conv3`, 32x32), layer 10 (`block4_conv3`, 16x16) and
    layer 13 (`block5_conv3`, 8x8). After layer 13 a max-pool, two more
    conv-BN-ReLU stages each followed by a max-pool (`block6_*`), a global
    average pool (a no-op at 32x32, where the map is 1x1) and a dense layer
    (`global_fc`) make the global vector `g` (`512 * width_multiplier`
    units).

    An `AttentionEstimator` (section 3 of the paper) on each attended layer
    `i` computes `c_s = <u, l_s + g>` (`"pc"`) or `<l_s, g>` (`"dp"`),
    normalises over space to `a_s`, and returns `g_a^i = sum_s a_s l_s`.
    The global vector `g` only steers the attention: it is not fed to the
    classifier.

    - `aggregation="concat"`: one classifier on `[g_a^1, ..., g_a^k]`
      (a dense layer `predictions`);
    - `aggregation="indep"`: one dense layer per attended layer
      (`scores_i`); their class scores (logits) are averaged, then
      `classifier_activation` is applied (layer `predictions`).

    The model is channels-last inside, whatever `keras.config.image_data_format()`
    says. The attention maps are reached with `attention_maps_model(model)`.

    Args:
        include_top: add the classifier. Without it the model returns the
            concatenated attended vectors `(batch, sum_i C_i)`, the features
            the classifier would see.
        weights: `None` (random initialisation), a preset name (see
            `keras_attention_vision.presets.available_presets("AttentionVGG")`;
            it loads into any input size and into `include_top=False`
            models, its layers matched by name), or the path of a weights
            file saved from a model of the same configuration.
        input_tensor: optional Keras tensor (the output of `keras.Input()` or
            of another layer) to use as the image input.
        input_shape: `(H, W, channels)`, default `(32, 32, 3)` with the top
            and `(None, None, 3)` without it; `H` and `W` at least 16 (or
            `None`).
        pooling: must be `None`: the attended vectors are already pooled by
            attention (accepted for the `keras.applications` signature).
        classes: number of classes (default 100, the paper's CIFAR-100).
        classifier_activation: activation of the `predictions` layer
            (`None` gives logits).
        attention_layers: `"att3"` (layers 7, 10, 13) or `"att2"` (10, 13).
        aggregation: `"concat"` or `"indep"`.
        compatibility: `"pc"` or `"dp"` (see `AttentionEstimator`).
        normalization: `"softmax"` or `"sigmoid"` (see `AttentionEstimator`).
        width_multiplier: scales every layer's channel count (1.0 is VGG-16;
            small values make small test or demo models).
        name: the model name (default `"attention_vgg_att3_concat_pc"` and so on).

    Returns:
        A functional `keras.Model` from images `(batch, H, W, channels)` to
        class predictions `(batch, classes)`.

    Example:

    ```python
    model = AttentionVGG(input_shape=(32, 32, 3), classes=100)
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    maps = attention_maps_model(model)(images)  # [(b, 32, 32), (b, 16, 16), (b, 8, 8)]
    ```
    """
    layers = PAPER_LAYERS.get(attention_layers) if isinstance(attention_layers, str) else None
    if layers is None:
        raise ValueError(f"`attention_layers` must be one of {tuple(PAPER_LAYERS)}. "
                         f"Received: attention_layers={attention_layers!r}")
    _check_head_arguments(aggregation, compatibility, normalization, classes)
    presets.check_weights_argument(weights, "AttentionVGG")
    if pooling is not None:
        raise ValueError("AttentionVGG has no `pooling` option: attention already pools "
                         f"the attended layers. Received: pooling={pooling!r}")
    if (isinstance(width_multiplier, bool) or not isinstance(width_multiplier, (int, float))
            or not width_multiplier > 0):
        raise ValueError("`width_multiplier` must be a positive number. "
                         f"Received: width_multiplier={width_multiplier!r}")
    if input_shape is None:
        if input_tensor is not None:
            input_shape = tuple(input_tensor.shape[1:])
        else:  # as keras.applications: any image size without the top
            input_shape = (32, 32, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or any(
            d is not None and d < MIN_INPUT_SIZE for d in input_shape[:2]):
        raise ValueError(f"`input_shape` must be (H, W, channels) with H, W >= "
                         f"{MIN_INPUT_SIZE}. Received: input_shape={input_shape}")
    name = name or f"attention_vgg_{attention_layers}_{aggregation}_{compatibility}"

    if input_tensor is None:
        image = keras.Input(input_shape, name="image")
    elif not keras.backend.is_keras_tensor(input_tensor):
        image = keras.Input(tensor=input_tensor, shape=input_shape, name="image")
    else:
        image = input_tensor

    def width(channels):
        return max(1, int(round(channels * width_multiplier)))

    x, local_features = image, []
    for index, (block, conv, channels) in enumerate(_VGG16, start=1):
        x = _conv_bn_relu(x, width(channels), f"block{block}_conv{conv}")
        if index in layers:
            local_features.append(x)
        if index in (7, 10, 13):  # the first two pools (after 2 and 4) are removed
            x = _pool(x, f"block{block}_pool")
    for i in (1, 2):
        x = _conv_bn_relu(x, width(512), f"block6_conv{i}")
        x = _pool(x, f"block6_pool{i}")
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_last",
                                            name="global_pool")(x)
    global_vector = keras.layers.Dense(width(512), name="global_fc")(x)
    outputs = _attention_head(local_features, global_vector, aggregation, compatibility,
                              normalization, include_top, classes, classifier_activation,
                              data_format="channels_last")
    inputs = image
    if input_tensor is not None:
        inputs = _single(keras.utils.get_source_inputs(input_tensor))
    model = keras.Model(inputs, outputs, name=name)
    if weights is None:
        return model
    config = {"attention_layers": attention_layers, "aggregation": aggregation,
              "compatibility": compatibility, "normalization": normalization,
              "width_multiplier": width_multiplier}
    reference = presets.top_reference(weights, "AttentionVGG", include_top, classes,
                                      input_shape, AttentionVGG)
    return presets.load_application_weights(model, weights, "AttentionVGG", config,
                                            reference=reference)


def attach_attention_estimators(model, layer_names, global_layer=None, aggregation="concat",
                                compatibility="pc", normalization="softmax", classes=1000,
                                classifier_activation="softmax", include_top=True,
                                global_units=None, name=None):
    """Builds the att-concat or att-indep head of Jetley et al. on any functional backbone.

    The outputs of the layers named in `layer_names` are the local features
    `l^i`; the output of `global_layer` (default: the model's first output)
    is the global feature `g`, globally average-pooled when it is a feature
    map and optionally passed through a dense layer of `global_units`. Each
    local map gets an `AttentionEstimator` (`attention_1`, `attention_2`, ...)
    and the attended vectors feed the classifier, as in `AttentionVGG`.

    The new model reuses the backbone's layers, so it starts from (and
    shares) the backbone's weights; set `model.trainable = False` on the
    backbone before compiling to train the head only.

    Args:
        model: a functional `keras.Model` (a `keras.applications` model, e.g.
            `VGG16(include_top=False)`, or the user's own).
        layer_names: names of the layers whose outputs are attended; each
            output must be a rank 4 feature map.
        global_layer: name of the layer giving `g` (rank 2, or rank 4 then
            pooled); `None` uses `model.outputs[0]`.
        aggregation: `"concat"` or `"indep"` (see `AttentionVGG`).
        compatibility: `"pc"` or `"dp"`.
        normalization: `"softmax"` or `"sigmoid"`.
        classes: number of classes.
        classifier_activation: activation of the `predictions` layer.
        include_top: add the classifier (otherwise the model returns the
            concatenated attended vectors).
        global_units: optional width of a dense layer (`global_fc`) on `g`.
        name: the new model's name (default: `model.name + "_attention"`).

    Returns:
        A functional `keras.Model` from the backbone's inputs to the
        predictions `(batch, classes)`.

    Example:

    ```python
    base = keras.applications.VGG16(include_top=False, weights="imagenet",
                                    input_shape=(224, 224, 3))
    model = attach_attention_estimators(
        base, ["block4_conv3", "block5_conv3"], classes=20)
    ```
    """
    _check_head_arguments(aggregation, compatibility, normalization, classes)
    if isinstance(layer_names, str):
        layer_names = [layer_names]
    layer_names = list(layer_names)
    if not layer_names:
        raise ValueError("`layer_names` must name at least one layer. "
                         f"Received: layer_names={layer_names}")
    known = {layer.name for layer in model.layers}
    unknown = [n for n in layer_names + ([global_layer] if global_layer else [])
               if n not in known]
    if unknown:
        raise ValueError(f"attach_attention_estimators: the model {model.name!r} has no "
                         f"layers {unknown}. Received: layer_names={layer_names}, "
                         f"global_layer={global_layer!r}")
    local_features = [model.get_layer(n).output for n in layer_names]
    bad = {n: tuple(t.shape) for n, t in zip(layer_names, local_features) if len(t.shape) != 4}
    if bad:
        raise ValueError("attach_attention_estimators attends rank 4 feature maps; "
                         f"these layers give other shapes: {bad}")
    g = model.get_layer(global_layer).output if global_layer else model.outputs[0]
    if len(g.shape) == 4:
        g = keras.layers.GlobalAveragePooling2D(name="global_pool")(g)
    elif len(g.shape) != 2:
        raise ValueError("The global feature must be of rank 2 or 4. "
                         f"Received: global_layer={global_layer!r} of shape {tuple(g.shape)}")
    if global_units is not None:
        g = keras.layers.Dense(global_units, name="global_fc")(g)
    outputs = _attention_head(local_features, g, aggregation, compatibility, normalization,
                              include_top, classes, classifier_activation)
    return keras.Model(_single(model.inputs), outputs, name=name or f"{model.name}_attention")


def attention_maps_model(model):
    """A model from `model`'s inputs to the maps of its `AttentionEstimator` layers.

    Args:
        model: a functional model with `AttentionEstimator` layers, e.g. from
            `AttentionVGG` or `attach_attention_estimators`, or loaded from a
            `.keras` file of one.

    Returns:
        A functional `keras.Model` sharing `model`'s weights, whose outputs
        are the list of attention maps `(batch, H_i, W_i)`, one per
        estimator in the order they were built (`attention_1`, ...).

    Example:

    ```python
    maps = attention_maps_model(model).predict(images)  # a list of maps
    ```
    """
    estimators = [layer for layer in model.layers if isinstance(layer, AttentionEstimator)]
    if not estimators:
        raise ValueError(f"The model {model.name!r} has no AttentionEstimator layer. "
                         f"Received: layers={[layer.name for layer in model.layers]}")
    return keras.Model(_single(model.inputs), [layer.output[1] for layer in estimators],
                       name=f"{model.name}_attention_maps")
