"""Grad-CAM, Grad-CAM++ and Saliency maps of a model, computed with tf-keras-vis.

Nothing of these methods is re-implemented here: the maps come from
tf-keras-vis 0.8.7, which runs with Keras 3 on the TensorFlow backend only.
They can be scored against boxes with `metrics.pointing_game` and
`metrics.attention_iou`, exactly as the attention maps are.
"""

import warnings

import keras
import numpy as np

METHODS = ("gradcam", "gradcam++", "saliency")


def check_tensorflow_backend(what="Grad-CAM, Grad-CAM++ and Saliency maps"):
    """Raises a `RuntimeError` unless Keras runs on TensorFlow (tf-keras-vis needs it)."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{what} are computed with tf-keras-vis, which needs the TensorFlow "
            "backend (set KERAS_BACKEND=tensorflow before importing keras). "
            f"Received: the active backend is {backend!r}."
        )


def explanation_maps(model, images, class_indices, method="gradcam",
                     penultimate_layer=None, batch_size=None):
    """Class-discriminative maps of `model` for `images`, from tf-keras-vis.

    - `"gradcam"`: `tf_keras_vis.gradcam.Gradcam` (Selvaraju et al., 2017);
    - `"gradcam++"`: `tf_keras_vis.gradcam_plus_plus.GradcamPlusPlus`;
    - `"saliency"`: `tf_keras_vis.saliency.Saliency` (vanilla gradients).

    The output layer's activation is replaced by a linear one
    (`ReplaceToLinear`, on a clone of the model) so the score is the class
    logit. Grad-CAM maps are upsampled by tf-keras-vis to the input size.

    Args:
        model: a functional `keras.Model` with one image input and one class
            output (e.g. `AttentionVGG`).
        images: `(N, H, W, C)` float images.
        class_indices: `(N,)` class explained for each image (e.g. the
            labels, or the predicted classes).
        method: `"gradcam"`, `"gradcam++"` or `"saliency"`.
        penultimate_layer: name of the convolutional layer that Grad-CAM
            weights; `None` lets tf-keras-vis pick the last one (for
            `AttentionVGG`, pass `"block5_conv3"`, the last attended layer).
        batch_size: images per call of the explainer (`None`: all at once).
            The explainer (and its clone of the model) is built once.

    Returns:
        A float NumPy array `(N, H, W)`, each map in `[0, 1]`.

    Raises:
        RuntimeError: on a backend other than TensorFlow.

    Example:

    ```python
    cams = explanation_maps(model, canvases, labels, "gradcam",
                            penultimate_layer="block5_conv3")
    print(pointing_game(cams, boxes))
    ```
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}")
    check_tensorflow_backend()
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    images = np.asarray(images, "float32")
    classes = [int(c) for c in np.asarray(class_indices).reshape(-1)]
    if len(classes) != len(images):
        raise ValueError("`class_indices` must hold one class per image. Received: "
                         f"{len(classes)} classes for images.shape={images.shape}")
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"`batch_size` must be None or a positive int. "
                         f"Received: batch_size={batch_size!r}")
    if method == "saliency":
        explainer = Saliency(model, model_modifier=ReplaceToLinear(), clone=True)

        def explain(score, x):
            return explainer(score, x)
    else:
        cls = Gradcam if method == "gradcam" else GradcamPlusPlus
        explainer = cls(model, model_modifier=ReplaceToLinear(), clone=True)

        def explain(score, x):
            return explainer(score, x, penultimate_layer=penultimate_layer,
                             seek_penultimate_conv_layer=penultimate_layer is None)
    step = batch_size or max(len(images), 1)
    with warnings.catch_warnings():
        # tf-keras-vis calls a one-input model with a list of one tensor, which
        # Keras accepts but warns about on every call.
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't "
                                "match the expected structure", category=UserWarning)
        maps = [np.asarray(explain(CategoricalScore(classes[k:k + step]),
                                   images[k:k + step]),
                           "float32").reshape((-1,) + images.shape[1:3])
                for k in range(0, len(images), step)]
    return np.concatenate(maps)
