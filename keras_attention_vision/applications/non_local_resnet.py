"""ResNet-50 with non-local blocks (Wang et al., 2018), for images and video (C2D).

Also `insert_non_local_blocks`, which adds blocks after named layers of any
functional model, keeping its weights.
"""

import contextlib

import keras
from keras import ops

from keras_attention_vision import presets
from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.non_local_block import NonLocalBlock

# Where the paper puts its blocks in ResNet-50 (keras.applications layer names):
# 1 block right before the last residual block of res4; 5 blocks on every
# other residual block, 2 in res3 and 3 in res4; 10 blocks on every residual
# block of res3 and res4.
PAPER_PLACEMENTS = {
    0: (),
    1: ("conv4_block5_out",),
    5: ("conv3_block1_out", "conv3_block3_out",
        "conv4_block1_out", "conv4_block3_out", "conv4_block5_out"),
    10: tuple(f"conv3_block{i}_out" for i in range(1, 5))
    + tuple(f"conv4_block{i}_out" for i in range(1, 7)),
}


def insert_non_local_blocks(model, after, block_factory=None, input_tensors=None,
                            share_layers=False, **block_kwargs):
    """Returns a copy of a functional model with non-local blocks inserted.

    Every layer named in `after` is followed by a block (by default
    `NonLocalBlock(**block_kwargs, name=f"{layer_name}_nonlocal")`), the
    layers that consumed its output now consume the block's output, and every
    original layer keeps its weights. Blocks start as the identity, so the
    new model gives the outputs of the old one until it is trained.

    Args:
        model: a functional `keras.Model` (a user's own network or a
            `keras.applications` one).
        after: layer names, e.g. `["conv4_block5_out"]`.
        block_factory: optional callable `layer_name -> keras.layers.Layer`
            making the block (e.g. a `SelfAttention2D`, or a block wrapping
            frames as video).
        input_tensors: optional tensor(s) to build the copy on (as in
            `keras.models.clone_model`): `keras.Input`s, or tensors computed
            from them (e.g. by a preprocessing layer). In the latter case the
            copy's inputs are the `keras.Input`s they come from and the layers
            in between are part of the copy (`keras.applications` does the
            same with `input_tensor`).
        share_layers: reuse the model's layer objects instead of copies (no
            new weights are created, which is faster for large models; the two
            models then share their weights).
        **block_kwargs: arguments of the default `NonLocalBlock`.

    Returns:
        A new functional `keras.Model`.

    Example:

    ```python
    base = keras.applications.ResNet50(weights=None, include_top=False,
                                       input_shape=(64, 64, 3))
    model = insert_non_local_blocks(base, ["conv4_block5_out"], sub_sample=True)
    ```
    """
    if isinstance(after, str):
        after = [after]
    after = list(after)
    names = [layer.name for layer in model.layers]
    unknown = [name for name in after if name not in names]
    if unknown:
        raise ValueError(f"insert_non_local_blocks: the model has no layers {unknown}. "
                         f"Received: after={after}")
    if block_factory is None:
        def block_factory(name):
            return NonLocalBlock(**block_kwargs, name=f"{name}_nonlocal")

    output_layers = [t._keras_history.operation.name for t in model.outputs]
    produced = {}

    def call_function(layer, *args, **kwargs):
        out = layer(*args, **kwargs)
        if layer.name in after:
            out = block_factory(layer.name)(out)
        if layer.name in output_layers:
            produced[layer.name] = out
        return out

    def clone_function(layer):
        if share_layers:
            return layer
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, input_tensors=input_tensors,
                                   clone_function=clone_function,
                                   call_function=call_function)
    if input_tensors is not None:
        flat = keras.tree.flatten(input_tensors)
        sources = []
        for tensor in flat:
            sources += [x for x in keras.utils.get_source_inputs(tensor)
                        if all(x is not y for y in sources)]
        if len(sources) != len(flat) or any(a is not b for a, b in zip(sources, flat)):
            # clone_model would cut the graph at the given tensors (the new
            # model gets fresh Inputs in their place); keep what leads to them.
            outputs = [produced[name] for name in output_layers]
            new = keras.Model(sources[0] if len(sources) == 1 else sources,
                              outputs[0] if len(outputs) == 1 else outputs,
                              name=model.name)
    if not share_layers:
        for layer in model.layers:
            if layer.weights:
                new.get_layer(layer.name).set_weights(layer.get_weights())
    return new


def preprocess_input(x, data_format=None):
    """Preprocesses images for `NonLocalResNet50` with `backbone_weights="imagenet"`.

    The ResNet-50 preprocessing of `keras.applications.resnet50` ("caffe"
    mode): RGB -> BGR, then the ImageNet channel means are subtracted,
    without scaling. Takes RGB images with values in `[0, 255]`, channels
    last (the model's layout), as a NumPy array or a tensor.

    Example:

    ```python
    from keras_attention_vision.applications import non_local_resnet

    model = non_local_resnet.NonLocalResNet50(backbone_weights="imagenet")
    probabilities = model.predict(non_local_resnet.preprocess_input(images))
    ```
    """
    return keras.applications.resnet50.preprocess_input(x, data_format=data_format)


def decode_predictions(preds, top=5):
    """Decodes ImageNet predictions (1,000 classes) as `keras.applications.resnet50` does.

    Returns:
        A list, per image, of `(class_name, class_description, score)` tuples.
    """
    return keras.applications.resnet50.decode_predictions(preds, top=top)


@kav_export("keras_attention_vision.applications.FramesToBatch")
class FramesToBatch(keras.layers.Layer):
    """`(batch, T, H, W, C)` -> `(batch * T, H, W, C)`: run a 2D network per frame.

    Example:

    ```python
    video = keras.Input((8, 112, 112, 3))
    frames = FramesToBatch()(video)  # (None, 112, 112, 3)
    ```
    """

    def call(self, inputs):
        return ops.reshape(inputs, (-1,) + tuple(inputs.shape[2:]))

    def compute_output_shape(self, input_shape):
        batch, frames = input_shape[0], input_shape[1]
        merged = None if batch is None or frames is None else batch * frames
        return (merged,) + tuple(input_shape[2:])


@kav_export("keras_attention_vision.applications.BatchToFrames")
class BatchToFrames(keras.layers.Layer):
    """`(batch * T, H, W, C)` -> `(batch, T, H, W, C)`, the inverse of `FramesToBatch`.

    Args:
        frames: `T`.
        **kwargs: base layer arguments.

    Example:

    ```python
    video = BatchToFrames(8)(keras.Input((14, 14, 256)))  # (None, 8, 14, 14, 256)
    ```
    """

    def __init__(self, frames, **kwargs):
        super().__init__(**kwargs)
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"`frames` must be a positive int. Received: frames={frames!r}")
        self.frames = frames

    def get_config(self):
        return {**super().get_config(), "frames": self.frames}

    def call(self, inputs):
        return ops.reshape(inputs, (-1, self.frames) + tuple(inputs.shape[1:]))

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        batch = None if batch is None else batch // self.frames
        return (batch, self.frames) + tuple(input_shape[1:])


@kav_export("keras_attention_vision.applications.FrameNonLocalBlock")
class FrameNonLocalBlock(NonLocalBlock):
    """A 3D `NonLocalBlock` for a 2D network run on frames folded into the batch.

    Takes `(batch * frames, H, W, C)` (as inside a C2D network), attends over
    all `frames x H x W` positions of each clip, and returns the same shape.

    Args:
        frames: the number of frames `T` per clip.
        **kwargs: the `NonLocalBlock` arguments (channels last only).

    Call arguments:
        inputs: `(batch * frames, H, W, C)`.
        mask: optional boolean `(batch * frames, H, W)`, True at real
            positions (see `NonLocalBlock`).
        training, return_attention_scores: as in `NonLocalBlock`.
    """

    def __init__(self, frames, **kwargs):
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"`frames` must be a positive int. Received: frames={frames!r}")
        kwargs.setdefault("data_format", "channels_last")
        if kwargs["data_format"] != "channels_last":
            raise ValueError("FrameNonLocalBlock works on channels-last maps. "
                             f"Received: data_format={kwargs['data_format']!r}")
        super().__init__(**kwargs)
        self.frames = frames

    def get_config(self):
        return {**super().get_config(), "frames": self.frames}

    def _video_shape(self, input_shape):
        return (None, self.frames) + tuple(input_shape[1:])

    def build(self, input_shape):
        super().build(self._video_shape(input_shape))

    def call(self, inputs, mask=None, training=None, return_attention_scores=None):
        video = ops.reshape(inputs, (-1, self.frames) + tuple(inputs.shape[1:]))
        if mask is not None:  # (batch * frames, H, W) -> (batch, frames, H, W)
            mask = ops.reshape(mask, (-1, self.frames) + tuple(mask.shape[1:]))
        out = super().call(video, mask=mask, training=training,
                           return_attention_scores=return_attention_scores)
        if isinstance(out, tuple):
            return ops.reshape(out[0], ops.shape(inputs)), out[1]
        return ops.reshape(out, ops.shape(inputs))

    def _scores_shape(self, input_shape):
        return super()._scores_shape(self._video_shape(input_shape))


@contextlib.contextmanager
def _image_data_format(data_format):
    """Sets the global image data format for the block, restoring it after."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(data_format)
    try:
        yield
    finally:
        keras.config.set_image_data_format(previous)


def _placement(nonlocal_stages):
    if isinstance(nonlocal_stages, int) and not isinstance(nonlocal_stages, bool):
        if nonlocal_stages not in PAPER_PLACEMENTS:
            raise ValueError(
                "`nonlocal_stages` must be one of the paper's block counts "
                f"{tuple(PAPER_PLACEMENTS)} or a list of layer names. "
                f"Received: nonlocal_stages={nonlocal_stages!r}")
        return list(PAPER_PLACEMENTS[nonlocal_stages])
    if isinstance(nonlocal_stages, (list, tuple)) and all(
            isinstance(n, str) for n in nonlocal_stages):
        return list(nonlocal_stages)
    raise ValueError("`nonlocal_stages` must be an int or a list of layer names. "
                     f"Received: nonlocal_stages={nonlocal_stages!r}")


@kav_export("keras_attention_vision.applications.NonLocalResNet50")
@presets.preset_arguments("NonLocalResNet50")
def NonLocalResNet50(include_top=True, weights=None, input_tensor=None, input_shape=None,
                     pooling=None, classes=1000, classifier_activation="softmax",
                     nonlocal_stages=5, mode="embedded_gaussian", sub_sample=True,
                     backbone_weights=None, name="non_local_resnet50"):
    """ResNet-50 with non-local blocks in res3 and res4, for images or video.

    The backbone is `keras.applications.ResNet50` (its layer names and, with
    `backbone_weights`, its weights). Non-local blocks follow the residual
    blocks the paper chose (`nonlocal_stages=5`: 2 in res3 and 3 in res4, on
    every other residual block; `1`: right before the last block of res4;
    `10`: every block of res3 and res4), or the layers you name. The blocks
    start as the identity, so with `backbone_weights` the model gives the
    pretrained ResNet-50's outputs before fine-tuning, as in the paper.

    With a rank 4 `input_shape` `(T, H, W, C)` the model is the paper's video
    C2D baseline: the 2D ResNet runs on every frame and the non-local blocks
    are 3D, over the `T x H x W` positions of each clip; pooling is over
    space and time.

    Deviation from the paper's C2D (its Table 1): there, conv1 and pool1
    have a temporal stride of 2 and a `3x1x1` pool2 halves time again, so a
    32-frame clip has 4 frames from res3 on. Here every frame goes through
    the unmodified `keras.applications.ResNet50` (which has no time axis, so
    its ImageNet weights load as they are) and the time axis keeps all `T`
    frames up to the final pooling. The non-local blocks therefore attend
    over `T x H x W` positions, 8 times more than the paper's for the same
    clip; give the model the paper's 4 (or 8) frames (e.g. every 8th frame
    of a 32-frame clip) to match its res3/res4 sizes and cost.

    The model is channels-last inside and takes channels-last inputs
    (`(batch, H, W, C)` or `(batch, T, H, W, C)`) whatever the global
    `keras.config.image_data_format()` is: the backbone is built with the
    format set to `"channels_last"` for the time of the call.

    Sub-sampled blocks pool in ceil mode, so small maps work too: at 16 px
    inputs res4 is 1x1 and its blocks attend to that one key.

    Args:
        include_top: add global average pooling and the classifier.
        weights: `None`, a preset name (none ships for this model yet: the
            error lists the presets), or the path of a weights file of this
            model. (For ImageNet, use `backbone_weights="imagenet"`, and
            feed images through `non_local_resnet.preprocess_input`.)
        input_tensor: optional tensor to build the model on: a `keras.Input`,
            or a tensor computed from one (e.g. by a `Rescaling` layer); the
            model's inputs are then the `keras.Input`s it comes from, and the
            layers in between are part of the model (as in
            `keras.applications`).
        input_shape: `(H, W, 3)` (default `(224, 224, 3)`, and `(None,
            None, 3)` with `include_top=False`) or `(T, H, W, 3)`, channels
            last.
        pooling: `None`, `"avg"` or `"max"` when `include_top=False`.
        classes: number of classes of the classifier.
        classifier_activation: activation of the classifier.
        nonlocal_stages: `0`, `1`, `5` or `10` (the paper's variants), or a
            list of ResNet-50 layer names after which to insert blocks.
        mode: the blocks' pairwise function (see `NonLocalBlock`).
        sub_sample: max-pool keys and values of the blocks (the paper's
            sub-sampling trick).
        backbone_weights: `None`, `"imagenet"` (downloaded by Keras) or the
            path of a `keras.applications.ResNet50(include_top=False)`
            weights file.
        name: the model name.

    Returns:
        A functional `keras.Model`.

    Example:

    ```python
    model = NonLocalResNet50(input_shape=(64, 64, 3), classes=10,
                             nonlocal_stages=1)
    video = NonLocalResNet50(input_shape=(4, 64, 64, 3), classes=10)
    ```
    """
    placement = _placement(nonlocal_stages)
    if weights == "imagenet":
        raise ValueError("No ImageNet weights ship for the non-local ResNet; start "
                         "from the pretrained backbone with backbone_weights='imagenet'. "
                         f"Received: weights={weights!r}")
    presets.check_weights_argument(weights, "NonLocalResNet50")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    if input_shape is None:
        if input_tensor is not None:
            input_shape = tuple(input_tensor.shape[1:])
        else:  # as keras.applications: any image size without the top
            input_shape = (224, 224, 3) if include_top else (None, None, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) not in (3, 4):
        raise ValueError("`input_shape` must be (H, W, C) or (T, H, W, C). "
                         f"Received: input_shape={input_shape}")
    with _image_data_format("channels_last"):
        inputs, x = _non_local_resnet(
            input_tensor, input_shape, placement, {"mode": mode, "sub_sample": sub_sample},
            backbone_weights, include_top, pooling, classes, classifier_activation)
    if input_tensor is not None:
        # The keras.Input(s) the tensor comes from, so that the layers
        # between them and `input_tensor` stay in the model.
        inputs = keras.utils.get_source_inputs(input_tensor)
        inputs = inputs[0] if len(inputs) == 1 else inputs
    model = keras.Model(inputs, x, name=name)
    if weights is None:
        return model
    config = {"nonlocal_stages": nonlocal_stages, "mode": mode, "sub_sample": sub_sample}
    reference = presets.top_reference(weights, "NonLocalResNet50", include_top, classes,
                                      input_shape, NonLocalResNet50)
    return presets.load_application_weights(model, weights, "NonLocalResNet50", config,
                                            reference=reference)


#: Where `NonLocalResNet` puts its blocks: after the first residual block of
#: stage 2 (1/2 resolution) and of stage 3 (1/4).
SMALL_NONLOCAL_AFTER = ("stage2_block1_out", "stage3_block1_out")


def _small_residual_block(x, filters, stride, name):
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False,
                                       data_format="channels_last", name=f"{name}_proj")(x)
        shortcut = keras.layers.BatchNormalization(momentum=0.9,
                                                   name=f"{name}_proj_bn")(shortcut)
    y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            data_format="channels_last", name=f"{name}_conv1")(x)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                            data_format="channels_last", name=f"{name}_conv2")(y)
    y = keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn2")(y)
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@kav_export("keras_attention_vision.applications.small_resnet")
def small_resnet(input_shape, classes=10, width=32, include_top=True, pooling=None,
                 classifier_activation="softmax", input_tensor=None, name="small_resnet"):
    """A 5-block ResNet (stages at 1, 1/2 and 1/4 resolution) for small images.

    Channels last inside (and batch norms on the last axis, their default)
    whatever `keras.config.image_data_format()` is. The baseline of
    `NonLocalResNet` (and of the `non-local` recipe).

    Args:
        input_shape: `(H, W, C)`; `H` and `W` may be `None`.
        classes, classifier_activation: the classifier (`include_top=True`).
        width: channels of the first stage (doubled per stage).
        include_top: global average pooling and the `predictions` layer.
        pooling: `None`, `"avg"` or `"max"` when `include_top=False`.
        input_tensor: optional Keras tensor to build the model on.
        name: the model name.

    Returns:
        A functional `keras.Model`.
    """
    if input_tensor is None:
        inputs = keras.Input(input_shape)
    elif not keras.backend.is_keras_tensor(input_tensor):
        inputs = keras.Input(tensor=input_tensor, shape=input_shape)
    else:
        inputs = input_tensor
    x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                            data_format="channels_last", name="stem")(inputs)
    x = keras.layers.BatchNormalization(momentum=0.9, name="stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = _small_residual_block(x, width, 1, "stage1_block1")
    x = _small_residual_block(x, 2 * width, 2, "stage2_block1")
    x = _small_residual_block(x, 2 * width, 1, "stage2_block2")
    x = _small_residual_block(x, 4 * width, 2, "stage3_block1")
    x = _small_residual_block(x, 4 * width, 1, "stage3_block2")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(data_format="channels_last",
                                                name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               name="predictions")(x)
    elif pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(data_format="channels_last",
                                                name="avg_pool")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(data_format="channels_last",
                                            name="max_pool")(x)
    if input_tensor is not None:
        inputs = keras.utils.get_source_inputs(input_tensor)
        inputs = inputs[0] if len(inputs) == 1 else inputs
    return keras.Model(inputs, x, name=name)


@kav_export("keras_attention_vision.applications.NonLocalResNet")
@presets.preset_arguments("NonLocalResNet")
def NonLocalResNet(include_top=True, weights=None, input_tensor=None, input_shape=None,
                   pooling=None, classes=10, classifier_activation="softmax", width=16,
                   nonlocal_after=SMALL_NONLOCAL_AFTER, mode="embedded_gaussian",
                   sub_sample=True, name="non_local_resnet"):
    """A small ResNet (5 residual blocks, 3 stages) with non-local blocks, for small images.

    The network of the `non-local` recipe (`kav train non-local`): `small_resnet`
    with a `NonLocalBlock` (sub-sampled, identity at initialisation) after
    each layer named in `nonlocal_after` (by default the first block of
    stages 2 and 3). Channels last inside and outside.

    Args:
        include_top: add global average pooling and the classifier.
        weights: `None`, a preset name (`"non_local_resnet_cluttered_mnist"`,
            trained by the recipe on 40x40 cluttered MNIST), or the path of a
            `.weights.h5` file of this model. A preset loads into any
            `input_shape` and into `include_top=False` models (its layers
            are matched by name).
        input_tensor: optional Keras tensor to build the model on.
        input_shape: `(H, W, C)`; default `(40, 40, 1)` with the top, and
            `(None, None, 1)` without it (any image size).
        pooling: `None`, `"avg"` or `"max"` when `include_top=False`.
        classes: number of classes of the classifier.
        classifier_activation: activation of the classifier.
        width: channels of the first stage (doubled per stage).
        nonlocal_after: layer names of `small_resnet` followed by a block
            (an empty tuple gives the plain ResNet).
        mode: the blocks' pairwise function (see `NonLocalBlock`).
        sub_sample: max-pool keys and values of the blocks.
        name: the model name.

    Returns:
        A functional `keras.Model`.

    Example:

    ```python
    model = NonLocalResNet(weights="non_local_resnet_cluttered_mnist")
    probabilities = model.predict(canvases)        # (batch, 40, 40, 1) in [0, 1]
    ```
    """
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"`pooling` must be None, 'avg' or 'max'. Received: pooling={pooling!r}")
    presets.check_weights_argument(weights, "NonLocalResNet")
    if input_shape is None:
        if input_tensor is not None:
            input_shape = tuple(input_tensor.shape[1:])
        else:
            input_shape = (40, 40, 1) if include_top else (None, None, 1)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"`input_shape` must be (H, W, C). Received: input_shape={input_shape}")
    after = [nonlocal_after] if isinstance(nonlocal_after, str) else list(nonlocal_after)

    def build(shape, top, tensor, classes):
        base = small_resnet(shape, classes, width, top, pooling, classifier_activation,
                            tensor, name=name)
        if not after:
            return base
        model = insert_non_local_blocks(base, after, mode=mode, sub_sample=sub_sample,
                                        data_format="channels_last", share_layers=True)
        return keras.Model(model.inputs[0], model.outputs[0], name=name)

    model = build(input_shape, include_top, input_tensor, classes)
    if weights is None:
        return model
    config = {"width": width, "nonlocal_after": after, "mode": mode,
              "sub_sample": sub_sample}
    reference = presets.top_reference(weights, "NonLocalResNet", include_top, classes,
                                      input_shape, NonLocalResNet)
    if not presets.is_preset_name(weights) and not include_top:
        raise ValueError("A weights file loads into NonLocalResNet with include_top=True "
                         "(presets load into include_top=False models too). "
                         f"Received: weights={weights!r}, include_top=False")
    return presets.load_application_weights(model, weights, "NonLocalResNet", config,
                                            reference=reference)


def _non_local_resnet(input_tensor, input_shape, placement, block_kwargs,
                      backbone_weights, include_top, pooling, classes,
                      classifier_activation):
    """Builds the graph of `NonLocalResNet50` (channels last); `(inputs, outputs)`."""
    block_kwargs = {**block_kwargs, "data_format": "channels_last"}
    video = len(input_shape) == 4
    frame_shape = input_shape[1:] if video else input_shape
    base = keras.applications.ResNet50(include_top=False, weights=backbone_weights,
                                       input_shape=frame_shape)
    if video:
        frames = input_shape[0]

        def factory(layer_name):
            return FrameNonLocalBlock(frames, name=f"{layer_name}_nonlocal",
                                      **block_kwargs)
    else:
        def factory(layer_name):
            return NonLocalBlock(name=f"{layer_name}_nonlocal", **block_kwargs)

    if video:
        # The per-frame ResNet is a nested model on the folded frames.
        backbone = insert_non_local_blocks(base, placement, block_factory=factory,
                                           share_layers=True)
        inputs = input_tensor if input_tensor is not None else keras.Input(input_shape)
        x = backbone(FramesToBatch(name="frames_to_batch")(inputs))
        x = BatchToFrames(frames, name="batch_to_frames")(x)
        avg, mx = keras.layers.GlobalAveragePooling3D, keras.layers.GlobalMaxPooling3D
    else:
        # Flat graph (Grad-CAM tools look for the last convolution by name).
        backbone = insert_non_local_blocks(base, placement, block_factory=factory,
                                           input_tensors=input_tensor, share_layers=True)
        inputs, x = backbone.inputs[0], backbone.outputs[0]
        avg, mx = keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D
    if include_top:
        x = avg(data_format="channels_last", name="avg_pool")(x)
        x = keras.layers.Dense(classes, activation=classifier_activation,
                               name="predictions")(x)
    elif pooling == "avg":
        x = avg(data_format="channels_last", name="avg_pool")(x)
    elif pooling == "max":
        x = mx(data_format="channels_last", name="max_pool")(x)
    return inputs, x
