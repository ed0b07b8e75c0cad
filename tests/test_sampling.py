"""The shared autoregressive sampler, on a toy model whose samples NumPy can compute."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attention_vision.sampling import AutoregressiveSampler
from tests import testing

SHAPE = (2, 3, 2)
K = 5


class PrefixSumModel(AutoregressiveSampler, keras.Model):
    """Sub-pixel o(t) is almost surely (sum of x[o(<t)] + t) mod K: a peaked logit."""

    def __init__(self, order, **kwargs):
        super().__init__(**kwargs)
        self.image_shape, self.categories, self.num_classes = SHAPE, K, None
        self._order = np.asarray(order)
        self._samplers = {}
        rank = np.argsort(self._order)
        self._earlier = (rank[None, :] < rank[:, None]).astype("float32")  # (p, q)
        self._rank = rank.astype("float32")

    def sampling_order(self):
        return self._order

    def _logits(self, images, condition):
        n = ops.shape(images)[0]
        flat = ops.reshape(ops.cast(images, "float32"), (n, -1))
        total = ops.matmul(flat, ops.convert_to_tensor(self._earlier.T)) + self._rank
        target = ops.cast(total, "int32") % K
        logits = 50.0 * ops.one_hot(target, K)
        return ops.reshape(logits, (n,) + SHAPE + (K,))


def numpy_fill(images, keep, order):
    x = images.reshape(len(images), -1).copy()
    keep = keep.reshape(len(images), -1)
    for t, p in enumerate(order):
        drawn = (x[:, order[:t]].sum(-1) + t) % K
        x[:, p] = np.where(keep[:, p], x[:, p], drawn)
    return x.reshape(images.shape)


class SamplingTest(testing.TestCase):
    def test_sample_and_complete_follow_the_model_order(self):
        order = np.random.default_rng(0).permutation(int(np.prod(SHAPE)))
        model = PrefixSumModel(order)
        n = 3
        expected = numpy_fill(np.zeros((n,) + SHAPE, "float32"),
                              np.zeros((n,) + SHAPE, bool), order)
        # raster order would give other values: the order is what is tested
        raster = numpy_fill(np.zeros((n,) + SHAPE, "float32"),
                            np.zeros((n,) + SHAPE, bool), np.arange(order.size))
        self.assertFalse(np.array_equal(expected, raster))
        for naive in (False, True):
            np.testing.assert_array_equal(model.sample(n, seed=0, naive=naive), expected)
        images = np.random.default_rng(1).integers(0, K, (n,) + SHAPE).astype("float32")
        mask = np.zeros(SHAPE, bool)
        mask[0] = True  # first row of every image kept, by NumPy broadcasting
        done = model.complete(images, mask, seed=0)
        np.testing.assert_array_equal(
            done, numpy_fill(images, np.broadcast_to(mask, images.shape), order))
        np.testing.assert_array_equal(done[:, 0], images[:, 0])
        np.testing.assert_array_equal(model.complete(images, mask, seed=0, naive=True),
                                      done)

    def test_errors_quote_the_values(self):
        model = PrefixSumModel(np.arange(12))
        with pytest.raises(ValueError, match="temperature=0"):
            model.sample(1, temperature=0)
        with pytest.raises(ValueError, match=r"mask.shape=\(2, 3\)"):
            model.complete(np.zeros((1,) + SHAPE), np.ones((2, 3), bool))
        with pytest.raises(ValueError, match=r"images.shape=\(1, 2, 3\)"):
            model.complete(np.zeros((1, 2, 3)), True)
        with pytest.raises(ValueError, match=r"\['low_resolution'\]"):
            model.sample(1, low_resolution=np.zeros((1, 1, 1, 2)))
        with pytest.raises(ValueError, match="n=0"):
            model.sample(0)
