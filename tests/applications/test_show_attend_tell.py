"""ShowAttendTell: loss terms against NumPy, beam search, REINFORCE gradients, saving."""

import os
import tempfile

import keras
import numpy as np
import pytest

from keras_attention_vision.applications import ShowAttendTell, build_vocabulary
from keras_attention_vision.applications.show_attend_tell import END, PAD, START, UNK
from keras_attention_vision.distributions import UnsupportedBackendError
from tests import testing
from tests.reinforce_testing import gradients, needs_tfp

WORDS = ["a", "red", "blue", "circle", "square", "left", "of"]
SMALL = dict(input_shape=(16, 16, 3), encoder_filters=(4, 4, 4), embedding_dim=8, units=8,
             attention_units=8, max_caption_length=6, seed=0)


def _model(**kwargs):
    model = ShowAttendTell(WORDS, **{**SMALL, **kwargs})
    model.build()
    testing.perturb_weights(model)
    return model


def _images(n=3, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, 16, 16, 3)).astype("float32")


def _tokens():
    # <start> a red circle <end> <pad> ... with different lengths.
    return np.array([[START, 4, 5, 7, END, PAD, PAD],
                     [START, 4, 6, 8, 9, 10, END],
                     [START, 7, END, PAD, PAD, PAD, PAD]], "int32")


def np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


class ShowAttendTellTest(testing.TestCase):
    def test_loss_terms_match_numpy(self):
        model = _model(attention_regularization=0.7)
        tokens = _tokens()
        y_pred = model([_images(), tokens])
        logits = testing.to_numpy(y_pred["logits"]).astype("float64")
        alpha = testing.to_numpy(y_pred["alpha"]).astype("float64")
        assert alpha.shape == (3, 6, 16)
        np.testing.assert_allclose(alpha.sum(-1), 1.0, atol=1e-5)
        targets = tokens[:, 1:]
        mask = (targets != PAD).astype("float64")
        log_p = np.take_along_axis(np_log_softmax(logits), targets[..., None], -1)[..., 0]
        nll = -(log_p * mask).sum(1)
        # lambda * sum_i (1 - sum_t alpha_ti)^2 over the real steps only
        regulariser = ((1.0 - (alpha * mask[..., None]).sum(1)) ** 2).sum(-1)
        got_nll, got_reg, _ = model.caption_terms(tokens, y_pred)
        self.assertAllClose(got_nll, nll, atol=1e-4, rtol=1e-5)
        self.assertAllClose(got_reg, regulariser, atol=1e-4, rtol=1e-5)
        weights = np.array([1.0, 0.0, 2.5], "float32")
        expected = np.mean(weights * (nll + 0.7 * regulariser))
        loss = model.compute_loss(y=tokens, y_pred=y_pred, sample_weight=weights)
        self.assertAllClose(loss, expected, atol=1e-4, rtol=1e-5)
        self.assertAllClose(model.compute_loss(y=tokens, y_pred=y_pred),
                            np.mean(nll + 0.7 * regulariser), atol=1e-4, rtol=1e-5)

    def test_beam_width_one_is_greedy_decoding(self):
        model = _model()
        images = _images(4)
        out = model.generate(images, beam_width=1, max_length=5)
        annotations, projected, h, c = model.encode(images)
        previous = np.full((4,), START, "int32")
        greedy = [[] for _ in range(4)]
        alive = np.ones(4, bool)
        for _ in range(5):
            logits, _, h, c = model.decode_step(previous, h, c, annotations, projected)
            logits = testing.to_numpy(logits)
            logits[:, [PAD, START]] = -np.inf
            previous = logits.argmax(-1).astype("int32")
            for i in range(4):
                if alive[i]:
                    if previous[i] == END:
                        alive[i] = False
                    else:
                        greedy[i].append(int(previous[i]))
        assert out["tokens"] == greedy
        assert [len(a) for a in out["attention"]] == [len(g) for g in greedy]

    def test_beam_search_stops_at_max_length(self):
        model = _model()
        bias = testing.to_numpy(model.output_logits.bias)
        bias[END] = -1e4  # the model never wants to stop
        model.output_logits.bias.assign(bias)
        for k in (1, 3):
            out = model.generate(_images(), beam_width=k, max_length=4)
            assert [len(t) for t in out["tokens"]] == [4, 4, 4]
            assert [a.shape for a in out["attention"]] == [(4, 4, 4)] * 3
        out = model.generate(_images(), beam_width=2)
        assert [len(t) for t in out["tokens"]] == [6, 6, 6]  # max_caption_length

    def test_returns_the_best_beams_score(self):
        model = _model()
        images = _images(3, seed=5)
        out = model.generate(images, beam_width=3, max_length=5, length_penalty=1.0,
                             return_beams=True)
        for i in range(3):
            scores = [s for _, s in out["beams"][i]]
            assert out["scores"][i] == max(scores)
            assert out["captions"][i] == out["beams"][i][0][0]
            # Recompute the score by teacher forcing: sum log p / length.
            words = out["tokens"][i]
            ended = len(words) < 5
            tokens = np.array([[START] + words + ([END] if ended else [])], "int32")
            logits = testing.to_numpy(model([images[i:i + 1], tokens])["logits"])[0]
            log_p = np_log_softmax(logits.astype("float64"))
            total = log_p[np.arange(len(tokens[0]) - 1), tokens[0, 1:]].sum()
            np.testing.assert_allclose(out["scores"][i], total / (len(tokens[0]) - 1),
                                       atol=1e-4)

    def test_fit_trains_on_strings_and_tokens(self):
        model = ShowAttendTell(WORDS, **SMALL)
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        captions = ["a red circle", "a blue square left of a red circle", "a circle"]
        history = model.fit(_images(), captions, epochs=3, batch_size=3, verbose=0)
        losses = history.history["loss"]
        assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
        model.fit(_images(), model.tokenize(captions), epochs=1, verbose=0,
                  sample_weight=np.array([1.0, 0.0, 1.0]))

    def test_save_load_keeps_vocabulary_and_outputs(self):
        model = _model()
        out = model.generate(_images(), beam_width=2)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "captioner.keras")
            model.save(path)
            loaded = keras.saving.load_model(path)
        assert list(loaded.vocabulary) == list(model.vocabulary)
        np.testing.assert_array_equal(loaded.tokenize(["a blue circle zebra"]),
                                      [[START, 4, 6, 7, UNK, END]])
        again = loaded.generate(_images(), beam_width=2)
        assert again["captions"] == out["captions"]
        np.testing.assert_allclose(again["scores"], out["scores"], atol=1e-5)

    def test_generated_attention_is_the_alpha_that_predicted_each_word(self):
        # Word t of a caption comes with alpha_t, computed at the step that
        # predicts it: teacher forcing on the generated caption gives the same maps.
        model = _model()
        images = _images(3, seed=2)
        out = model.generate(images, beam_width=2, max_length=5)
        for i in range(3):
            words = out["tokens"][i]
            tokens = np.array([[START] + words + [END]], "int32")
            alpha = testing.to_numpy(model([images[i:i + 1], tokens])["alpha"])[0]
            np.testing.assert_allclose(out["attention"][i].reshape(len(words), -1),
                                       alpha[:len(words)], atol=1e-5)
        # alpha_t comes from h_{t-1} (eq. 4-6): the map that predicts word 2 has
        # not read word 1 yet, so two captions that differ from word 1 on have
        # the same maps for words 1 and 2 and different ones for word 3.
        first = model([images[:1], np.array([[START, 4, 5, 6, END]], "int32")])["alpha"]
        other = model([images[:1], np.array([[START, 9, 10, 7, END]], "int32")])["alpha"]
        first, other = testing.to_numpy(first)[0], testing.to_numpy(other)[0]
        np.testing.assert_allclose(first[:2], other[:2], atol=1e-6)
        assert np.abs(first[2] - other[2]).max() > 1e-5

    def test_encoder_receptive_field(self):
        # Which 4x4 cells of the stride-4 map see pixel (13, 13)? The receptive
        # field of cell i (per axis) is [4i - 3, 4i + 6] (10 px) or
        # [4i - 8, 4i + 11] (20 px): rows/columns {2, 3, 4} or {1, ..., 5}.
        images = np.random.default_rng(3).uniform(size=(1, 32, 32, 3)).astype("float32")
        moved = images.copy()
        moved[0, 13, 13] += 5.0
        for field, seen in ((10, [2, 3, 4]), (20, [1, 2, 3, 4, 5])):
            model = ShowAttendTell(WORDS, **{**SMALL, "input_shape": (32, 32, 3),
                                             "encoder_filters": (8, 8, 8)},
                                   encoder_receptive_field=field)
            model.build()
            testing.perturb_weights(model)
            change = np.abs(testing.to_numpy(model.encoder(moved))
                            - testing.to_numpy(model.encoder(images)))[0].max(-1)
            expected = np.zeros((8, 8), bool)
            expected[np.ix_(seen, seen)] = True
            np.testing.assert_array_equal(change > 1e-6, expected, err_msg=str(field))
            assert model.get_config()["encoder_receptive_field"] == field
        with pytest.raises(ValueError, match="encoder_receptive_field=12"):
            ShowAttendTell(WORDS, **SMALL, encoder_receptive_field=12)

    def test_custom_encoder(self):
        inputs = keras.Input((16, 16, 3))
        features = keras.layers.Conv2D(5, 3, strides=4, padding="same")(inputs)
        encoder = keras.Model(inputs, features)
        model = ShowAttendTell(WORDS, encoder=encoder, coordinates=False,
                               **{**SMALL, "encoder_filters": (4, 4, 4)})
        out = model.generate(_images(2), beam_width=2, max_length=3)
        assert model.feature_grid == (4, 4)
        assert all(a.shape[1:] == (4, 4) for a in out["attention"])
        clone = ShowAttendTell.from_config(model.get_config())
        assert clone.feature_grid == (4, 4)

    def test_channels_first_images(self):
        last = _model(data_format="channels_last")
        first = ShowAttendTell(WORDS, **{**SMALL, "input_shape": (3, 16, 16)},
                               data_format="channels_first")
        first.build()
        first.set_weights(last.get_weights())
        images = _images()
        a = last.generate(images, beam_width=2)
        b = first.generate(np.moveaxis(images, -1, 1), beam_width=2)
        assert a["captions"] == b["captions"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)

    def test_bad_input_quotes_the_value(self):
        model = _model()
        model.compile(optimizer="adam")
        with pytest.raises(ValueError, match="caption=''"):
            model.fit(_images(), ["a red circle", "", "a circle"], verbose=0)
        with pytest.raises(ValueError, match="caption=' ! '"):
            model.tokenize(["a circle", " ! "])
        with pytest.raises(ValueError, match=r"tokens\[1, 2\]=57"):
            bad = _tokens()
            bad[1, 2] = 57
            model.fit(_images(), bad, verbose=0)
        with pytest.raises(ValueError, match=r"tokens\[2\]=\[1, 2"):
            model.fit(_images(), np.array([[1, 4, 2], [1, 5, 2], [1, 2, 0]]), verbose=0)
        with pytest.raises(ValueError, match="word='zebra'"):
            model.tokenize(["a zebra"], strict=True)
        with pytest.raises(ValueError, match=r"images.shape=\(2, 8, 8, 3\)"):
            model.generate(np.zeros((2, 8, 8, 3)))
        with pytest.raises(ValueError, match=r"images.shape=\(3, 16, 16, 1\)"):
            model.fit(np.zeros((3, 16, 16, 1)), ["a", "a", "a"], verbose=0)
        for kwargs, match in (({"attention": "sharp"}, "attention='sharp'"),
                              ({"units": 0}, "units=0"),
                              ({"baseline_momentum": 1.0}, "baseline_momentum=1.0"),
                              ({"input_shape": (16, 16)}, r"input_shape=\(16, 16\)")):
            with pytest.raises(ValueError, match=match):
                ShowAttendTell(WORDS, **{**SMALL, **kwargs})
        with pytest.raises(ValueError, match="vocabulary="):
            ShowAttendTell([], **SMALL)

    def test_build_vocabulary(self):
        vocab = build_vocabulary(["A red circle.", "a blue circle", "a red square"])
        assert vocab == ["<pad>", "<start>", "<end>", "<unk>", "a", "circle", "red",
                         "blue", "square"]
        assert build_vocabulary(["a b b"], min_count=2)[4:] == ["b"]


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="the torch error only")
def test_hard_attention_raises_the_backend_error_on_torch():
    with pytest.raises(UnsupportedBackendError, match="KERAS_BACKEND='torch'"):
        ShowAttendTell(WORDS, attention="hard", **SMALL)


@needs_tfp
class HardAttentionTest(testing.TestCase):
    def _grads(self, reward_weight):
        model = _model(attention="hard", expectation_probability=0.0,
                       attention_regularization=0.0, entropy_weight=0.0,
                       reward_weight=reward_weight)
        mlp = [model.attention.annotation_projection.kernel,
               model.attention.hidden_projection.kernel, model.attention.score.kernel]
        images, tokens = _images(), _tokens()

        def loss():
            y_pred = model([images, tokens], training=True)
            return model.compute_loss(y=tokens, y_pred=y_pred, training=True)

        return gradients(mlp, loss)[1]

    def test_cross_entropy_does_not_flow_through_the_sampled_index(self):
        for g in self._grads(reward_weight=0.0):
            assert g is None or np.all(g == 0), "cross-entropy gradient reached alpha"

    def test_reinforce_gradient_reaches_the_attention_mlp(self):
        for g in self._grads(reward_weight=1.0):
            assert g is not None and np.abs(g).sum() > 0

    def test_hard_model_fits_and_updates_its_baseline(self):
        model = ShowAttendTell(WORDS, attention="hard", **SMALL)
        model.compile(optimizer="adam")
        model.fit(_images(), ["a red circle", "a blue square", "a circle"], epochs=2,
                  batch_size=3, verbose=0)
        assert float(testing.to_numpy(model.baseline.value)) < 0  # a log-likelihood
        out = model.generate(_images(), beam_width=2)
        assert len(out["captions"]) == 3


def test_missing_vocabulary_is_a_clear_error():
    from keras_attention_vision.applications import ShowAttendTell

    with pytest.raises(ValueError, match=r"`vocabulary` is required.*weights=None"):
        ShowAttendTell()
    with pytest.raises(ValueError, match="weights='model.weights.h5'"):
        ShowAttendTell(weights="model.weights.h5")
