"""Show, Attend and Tell (Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel, Bengio; 2015)."""

import re

import keras
import numpy as np
from keras import ops

from keras_attention_vision.api_export import kav_export
from keras_attention_vision.layers.spatial_attention import SpatialAttention
from keras_attention_vision.layers.validation import (
    check_bool,
    check_choice,
    check_number,
    check_positive_int,
    standardize_data_format,
)
from keras_attention_vision.losses import weighted_mean
from keras_attention_vision.presets import (
    check_weights_argument,
    load_application_weights,
    preset_arguments,
)
from keras_attention_vision.reinforce import (
    MovingAverageBaseline,
    reinforce_loss,
    require_reinforce_backend,
)

#: Token ids 0-3 of every vocabulary.
SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")
PAD, START, END, UNK = range(4)


def standardize_caption(text):
    """Lower-cases a caption, drops punctuation and splits it into words."""
    if not isinstance(text, str):
        raise ValueError(f"A caption must be a string. Received: caption={text!r}")
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def build_vocabulary(captions, min_count=1, max_words=None):
    """The vocabulary of a list of captions: the special tokens, then the words.

    Words are ordered by decreasing count (ties alphabetically); words seen
    fewer than `min_count` times, or beyond the `max_words` most frequent,
    become `<unk>`.

    Args:
        captions: an iterable of caption strings (or of lists of references).
        min_count: the least count a word needs.
        max_words: keep at most this many words (`None`: all).

    Returns:
        A list `["<pad>", "<start>", "<end>", "<unk>", word, ...]`.
    """
    check_positive_int("min_count", min_count)
    check_positive_int("max_words", max_words, allow_none=True)
    counts = {}
    for caption in captions:
        for text in [caption] if isinstance(caption, str) else caption:
            for word in standardize_caption(text):
                counts[word] = counts.get(word, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in
                    SPECIAL_TOKENS), key=lambda w: (-counts[w], w))
    return list(SPECIAL_TOKENS) + words[:max_words]


@kav_export("keras_attention_vision.applications.ShowAttendTell")
class ShowAttendTell(keras.Model):
    """An attention captioner: CNN annotations, an LSTM decoder, soft or hard attention.

    From "Show, Attend and Tell" (Xu et al., 2015), section 3. The encoder's
    feature map gives `L` annotation vectors `a_i`; `h_0` and `c_0` are `tanh`
    MLPs of their mean (section 3.1.2); at each step the `SpatialAttention`
    layer gives the context `z_t` from `h_{t-1}` (eq. 4-6 and the gate `beta`,
    section 4.2.1), the LSTM reads `[E y_{t-1}; z_t]`, and the deep output
    layer (eq. 7) gives

    ```
    p(y_t | a, y_{t-1}) ~ exp(L_o(E y_{t-1} + L_h h_t + L_z z_t))
    ```

    `compute_loss` is, per caption (section 4.2.1, eq. 14 for soft attention),

    ```
    -sum_t log p(y_t) + lambda * sum_i (1 - sum_t alpha_ti)^2
    ```

    with the padded steps masked out of both sums. Hard attention (section 4.1)
    adds the REINFORCE term of eq. 12 through `reinforce.reinforce_loss`: the
    reward is the caption's log-likelihood `log p(y | s, a)`, the baseline a
    moving average of it (`reinforce.MovingAverageBaseline`, momentum 0.9),
    weighted by `reward_weight`, minus `entropy_weight` times the entropy of the
    attention; with probability `expectation_probability` (0.5 in the paper)
    a step uses the expectation `alpha` instead of the sample. Every term is a
    per-caption loss reduced as Keras's losses do
    (`losses.weighted_mean`), so `fit(sample_weight=...)` weights them all.
    Hard attention needs TFP: TensorFlow and JAX only.

    The vocabulary is a list of words kept in the model's config, so `.keras`
    files carry it: ids 0-3 are `<pad>`, `<start>`, `<end>`, `<unk>`;
    `tokenize` lower-cases, drops punctuation and splits on spaces (as
    `keras.layers.TextVectorization`'s default standardisation does);
    `build_vocabulary` makes one from captions.

    `fit(images, captions)` trains on (image, caption) pairs: `captions` as
    strings or as token arrays `(N, T)` (`<start> w_1 ... w_n <end> <pad>...`).
    `generate` decodes with beam search and returns the captions as text with
    the attention weights of each word.

    Args:
        vocabulary: a list of words; the special tokens are put first when
            missing. `None` only with `weights=` a preset name (its recorded
            vocabulary is used); otherwise a `ValueError`.
        input_shape: image shape `(H, W, C)` (or `(C, H, W)` for
            channels_first).
        encoder: a Keras model or layer from images (in `data_format`) to a
            feature map (in `data_format`), e.g. a `keras.applications` model
            with `include_top=False`; `None` builds a small CNN (three
            convolution stages with two 2x2 max-pools: a stride-4 map; see
            `encoder_receptive_field`).
        encoder_filters: filters of the built-in encoder's stages.
        encoder_receptive_field: the receptive field, in pixels, of the
            built-in encoder's annotation vectors (both give a stride-4 map):
            `20` (3x3 convolutions `f1, f1` / pool / `f2` / pool / `f3`) or
            `10` (3x3 `f1` / pool / 3x3 `f2` / pool / 1x1 `f3`): each vector
            then sees little beyond its own 4x4 cell, so the decoder has to
            attend to an object to describe it, not to its neighbour.
        coordinates: append the `(y, x)` position of each cell (in `[-1, 1]`)
            to its annotation vector, so the decoder can tell left from right
            (our addition; the paper's VGG features carry position implicitly).
        embedding_dim: `m`, the width of `E` and of the deep output.
        units: `n`, the LSTM width.
        attention_units: width of the attention MLP.
        attention: `"soft"` or `"hard"`.
        use_gate: the gating scalar `beta`.
        attention_regularization: `lambda` of the doubly stochastic
            regulariser (1 in the paper).
        reward_weight: weight of the REINFORCE term (hard attention).
        entropy_weight: weight of the entropy bonus (hard; 0.002 in the paper).
        baseline_momentum: momentum of the moving-average baseline (0.9).
        expectation_probability: probability that a hard-attention step uses
            the expectation instead of the sample (0.5 in the paper).
        dropout: dropout rate before `L_o` (training only).
        max_caption_length: most words of a tokenised caption (`<start>` and
            `<end>` not counted); the default length of `generate`.
        data_format: `"channels_last"`, `"channels_first"` or `None`.
        seed: seed of the hard-attention sampling.
        name: model name.
        weights: `None` (random initialisation), a preset name (arguments
            not passed, the vocabulary included, are the preset's; those
            passed must match them), or the path of a `.weights.h5` file of a model of the
            same configuration.

    Call arguments:
        inputs: `[images, tokens]`: images `(B, H, W, C)` and the caption
            tokens `(B, T)` (teacher forcing: step `t` reads token `t` and
            predicts token `t + 1`).
        training: hard attention samples when `True`.

    Returns:
        A dict: `logits` float32 `(B, T - 1, V)`, `alpha` float32
        `(B, T - 1, L)`; for hard attention in training also `log_probs` and
        `entropy` `(B, T - 1)`.

    Example:

    ```python
    data = make_shapes_captions(2000, seed=0)
    indices, texts = caption_pairs(data["captions"])
    model = ShowAttendTell(build_vocabulary(texts), input_shape=(32, 32, 3))
    model.compile(optimizer="adam")
    model.fit(data["images"][indices], texts, epochs=10, batch_size=64)
    out = model.generate(data["images"][:4], beam_width=3)
    out["captions"][0], out["attention"][0].shape   # 'a red circle ...', (words, 8, 8)
    ```
    """

    @preset_arguments("ShowAttendTell")
    def __init__(self, vocabulary=None, input_shape=(32, 32, 3), encoder=None,
                 encoder_filters=(32, 64, 64), encoder_receptive_field=20, coordinates=True,
                 embedding_dim=64,
                 units=128, attention_units=64, attention="soft", use_gate=True,
                 attention_regularization=1.0, reward_weight=0.1, entropy_weight=0.002,
                 baseline_momentum=0.9, expectation_probability=0.5, dropout=0.0,
                 max_caption_length=20, data_format=None, seed=None,
                 name="show_attend_tell", weights=None, **kwargs):
        if check_choice("attention", attention, ("soft", "hard")) == "hard":
            require_reinforce_backend()
        check_weights_argument(weights, "ShowAttendTell")
        if vocabulary is None:
            vocabulary = self._preset_vocabulary(weights)
        super().__init__(name=name, **kwargs)
        self.attention_mode = attention
        self.vocabulary = tuple(self._check_vocabulary(vocabulary))
        self._index = {word: i for i, word in enumerate(self.vocabulary)}
        if len(tuple(input_shape)) != 3 or not all(
                isinstance(d, int) and d > 0 for d in input_shape):
            raise ValueError("`input_shape` must be 3 positive ints (H, W, C) or (C, H, W). "
                             f"Received: input_shape={input_shape!r}")
        self.image_shape = tuple(input_shape)
        self.data_format = standardize_data_format(data_format)
        self.encoder_filters = tuple(encoder_filters)
        if len(self.encoder_filters) != 3:
            raise ValueError("`encoder_filters` must be 3 positive ints. "
                             f"Received: encoder_filters={encoder_filters!r}")
        for f in self.encoder_filters:
            check_positive_int("encoder_filters", f)
        self.encoder_receptive_field = check_choice(
            "encoder_receptive_field", encoder_receptive_field, (20, 10))
        self.coordinates = check_bool("coordinates", coordinates)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.units = check_positive_int("units", units)
        self.attention_units = check_positive_int("attention_units", attention_units)
        self.use_gate = check_bool("use_gate", use_gate)
        self.attention_regularization = check_number(
            "attention_regularization", attention_regularization, minimum=0)
        self.reward_weight = check_number("reward_weight", reward_weight, minimum=0)
        self.entropy_weight = check_number("entropy_weight", entropy_weight, minimum=0)
        self.baseline_momentum = check_number("baseline_momentum", baseline_momentum,
                                              minimum=0)
        if self.baseline_momentum >= 1:
            raise ValueError("`baseline_momentum` must be in [0, 1). "
                             f"Received: baseline_momentum={baseline_momentum!r}")
        self.expectation_probability = expectation_probability
        self.dropout_rate = check_number("dropout", dropout, minimum=0)
        if self.dropout_rate >= 1:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        self.max_caption_length = check_positive_int("max_caption_length",
                                                     max_caption_length)
        self.seed = seed
        self.custom_encoder = encoder is not None
        self.encoder = encoder if encoder is not None else self._small_encoder()
        dense = keras.layers.Dense
        self.embedding = keras.layers.Embedding(len(self.vocabulary), embedding_dim,
                                                name="embedding")
        self.init_h = dense(units, activation="tanh", name="init_h")
        self.init_c = dense(units, activation="tanh", name="init_c")
        self.attention = SpatialAttention(
            attention_units, mode=attention, use_gate=use_gate,
            expectation_probability=expectation_probability, data_format="channels_last",
            seed=seed, name="attention")
        self.cell = keras.layers.LSTMCell(units, name="lstm")
        self.output_hidden = dense(embedding_dim, name="l_h")
        self.output_context = dense(embedding_dim, name="l_z")
        self.output_logits = dense(len(self.vocabulary), name="l_o")
        self.dropout = keras.layers.Dropout(self.dropout_rate, seed=seed, name="dropout")
        if self.attention_mode == "hard":
            self.baseline = MovingAverageBaseline(baseline_momentum, name="baseline")
        if weights is not None:
            self.build()
            load_application_weights(self, weights, "ShowAttendTell", self.get_config())

    # Configuration ------------------------------------------------------------------

    @staticmethod
    def _preset_vocabulary(weights):
        """The vocabulary recorded with preset `weights`; a clear error otherwise."""
        from keras_attention_vision import presets

        if isinstance(weights, str) and presets.is_preset_name(weights):
            config = presets.preset_config(weights)
            if config.get("vocabulary"):
                return list(config["vocabulary"])
        raise ValueError(
            "`vocabulary` is required: the list of caption words (see "
            "`build_vocabulary`), unless `weights` names a preset, whose vocabulary is "
            "used. For a preset, `keras_attention_vision.presets.load_preset(name)` "
            f"builds the whole model. Received: vocabulary=None, weights={weights!r}")

    @staticmethod
    def _check_vocabulary(vocabulary):
        if isinstance(vocabulary, str) or not isinstance(vocabulary, (list, tuple)) or not all(
                isinstance(w, str) and w and " " not in w for w in vocabulary):
            raise ValueError("`vocabulary` must be a list of words (non-empty strings "
                             f"without spaces). Received: vocabulary={vocabulary!r}")
        words = [w for w in vocabulary if w not in SPECIAL_TOKENS]
        if not words or len(set(words)) != len(words):
            raise ValueError("`vocabulary` needs at least one word and no duplicates. "
                             f"Received: vocabulary={vocabulary!r}")
        return list(SPECIAL_TOKENS) + words

    def _channels_last_image_shape(self):
        if self.data_format == "channels_first":
            return self.image_shape[1:] + self.image_shape[:1]
        return self.image_shape

    def _small_encoder(self):
        f1, f2, f3 = self.encoder_filters
        inputs = keras.Input(self._channels_last_image_shape())
        conv = dict(padding="same", activation="relu", data_format="channels_last")
        pool = dict(pool_size=2, data_format="channels_last")
        local = self.encoder_receptive_field == 10
        # Named layers: the weights' paths do not depend on how many models exist.
        x = keras.layers.Conv2D(f1, 3, name="conv1", **conv)(inputs)
        if not local:
            x = keras.layers.Conv2D(f1, 3, name="conv1b", **conv)(x)
        x = keras.layers.MaxPooling2D(name="pool1", **pool)(x)
        x = keras.layers.Conv2D(f2, 3, name="conv2", **conv)(x)
        x = keras.layers.MaxPooling2D(name="pool2", **pool)(x)
        x = keras.layers.Conv2D(f3, 1 if local else 3, name="conv3", **conv)(x)
        return keras.Model(inputs, x, name="encoder")

    def get_config(self):
        return {
            "vocabulary": list(self.vocabulary),
            "input_shape": self.image_shape,
            "encoder": (keras.saving.serialize_keras_object(self.encoder)
                        if self.custom_encoder else None),
            "encoder_filters": self.encoder_filters,
            "encoder_receptive_field": self.encoder_receptive_field,
            "coordinates": self.coordinates,
            "embedding_dim": self.embedding_dim,
            "units": self.units,
            "attention_units": self.attention_units,
            "attention": self.attention_mode,
            "use_gate": self.use_gate,
            "attention_regularization": self.attention_regularization,
            "reward_weight": self.reward_weight,
            "entropy_weight": self.entropy_weight,
            "baseline_momentum": self.baseline_momentum,
            "expectation_probability": self.expectation_probability,
            "dropout": self.dropout_rate,
            "max_caption_length": self.max_caption_length,
            "data_format": self.data_format,
            "seed": self.seed,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("encoder") is not None:
            config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["input_shape"] = tuple(config["input_shape"])
        config["encoder_filters"] = tuple(config["encoder_filters"])
        return cls(**config)

    # Shapes and building ------------------------------------------------------------

    @property
    def vocabulary_size(self):
        return len(self.vocabulary)

    def _feature_shape(self):
        """`(h, w, D)` of the annotations (coordinates included)."""
        shape = self.encoder.compute_output_shape((1,) + self._encoder_input_shape())
        if len(shape) != 4:
            raise ValueError("The encoder must return a feature map (B, h, w, D). "
                             f"Received: encoder output shape={tuple(shape)}")
        if self.custom_encoder and self.data_format == "channels_first":
            shape = (shape[0],) + tuple(shape[2:]) + (shape[1],)
        return shape[1], shape[2], shape[3] + (2 if self.coordinates else 0)

    def _encoder_input_shape(self):
        return self.image_shape if self.custom_encoder else self._channels_last_image_shape()

    @property
    def feature_grid(self):
        """`(h, w)`: the grid of the attention weights (`L = h * w`)."""
        return self._feature_shape()[:2]

    def build(self, input_shape=None):
        if self.built:
            return
        height, width, channels = self._feature_shape()
        if not self.encoder.built:
            self.encoder.build((None,) + self._encoder_input_shape())
        self.embedding.build((None,))
        self.init_h.build((None, channels))
        self.init_c.build((None, channels))
        self.attention.build([(None, height * width, channels), (None, self.units)])
        self.cell.build((None, self.embedding_dim + channels))
        self.output_hidden.build((None, self.units))
        self.output_context.build((None, channels))
        self.output_logits.build((None, self.embedding_dim))
        if self.attention_mode == "hard":
            self.baseline.build()
        self.built = True

    # The network --------------------------------------------------------------------

    def encode(self, images, training=False):
        """Images to annotations and the decoder's initial state.

        Returns:
            `(annotations (B, L, D), projected (B, L, attention_units), h_0, c_0)`.
        """
        if not self.built:
            self.build()
        images = ops.cast(images, self.compute_dtype)
        if self.data_format == "channels_first" and not self.custom_encoder:
            images = ops.moveaxis(images, 1, -1)
        features = self.encoder(images, training=training)
        if self.data_format == "channels_first" and self.custom_encoder:
            features = ops.moveaxis(features, 1, -1)
        if self.coordinates:
            height, width = features.shape[1], features.shape[2]
            ys = (np.arange(height) + 0.5) / height * 2 - 1
            xs = (np.arange(width) + 0.5) / width * 2 - 1
            grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).astype("float32")
            grid = ops.cast(ops.convert_to_tensor(grid), features.dtype)
            grid = ops.broadcast_to(grid[None], ops.shape(features)[:3] + (2,))
            features = ops.concatenate([features, grid], axis=-1)
        annotations, projected = self.attention.project(features)
        mean = ops.mean(annotations, axis=1)
        return annotations, projected, self.init_h(mean), self.init_c(mean)

    def decode_step(self, previous_tokens, h, c, annotations, projected, training=False,
                    return_sample=False):
        """One decoder step: attention from `h_{t-1}`, the LSTM, the deep output.

        Args:
            previous_tokens: `y_{t-1}`, int `(B,)`.
            h, c: the LSTM state `(B, units)`.
            annotations, projected: from `encode`.
            training: dropout, and hard attention samples.
            return_sample: hard attention: also return the sample's
                log-probability and the entropy.

        Returns:
            `(logits (B, V) float32, alpha (B, L) float32, h, c)`, plus
            `(log_prob, entropy)` with `return_sample=True`.
        """
        embedded = self.embedding(previous_tokens)
        attended = self.attention.attend(annotations, projected, h, training=training,
                                         return_sample=return_sample)
        context, alpha = attended[0], attended[1]
        h, (h, c) = self.cell(ops.concatenate([embedded, context], axis=-1), [h, c],
                              training=training)
        deep = embedded + self.output_hidden(h) + self.output_context(context)
        deep = self.dropout(deep, training=training)
        logits = ops.cast(self.output_logits(deep), "float32")
        out = (logits, ops.cast(alpha, "float32"), h, c)
        if return_sample:
            out += (attended[3], attended[4])
        return out

    def call(self, inputs, training=False):
        images, tokens = inputs
        tokens = ops.cast(tokens, "int32")
        annotations, projected, h, c = self.encode(images, training=training)
        sampling = bool(training) and self.attention_mode == "hard"
        logits, alphas, log_probs, entropies = [], [], [], []
        for t in range(tokens.shape[1] - 1):
            step = self.decode_step(tokens[:, t], h, c, annotations, projected,
                                    training=training, return_sample=sampling)
            logits.append(step[0])
            alphas.append(step[1])
            h, c = step[2], step[3]
            if sampling:
                log_probs.append(step[4])
                entropies.append(step[5])
        out = {"logits": ops.stack(logits, axis=1), "alpha": ops.stack(alphas, axis=1)}
        if sampling:
            out["log_probs"] = ops.stack(log_probs, axis=1)
            out["entropy"] = ops.stack(entropies, axis=1)
        return out

    # The loss -----------------------------------------------------------------------

    def caption_terms(self, tokens, y_pred):
        """Per-caption `(nll (B,), regulariser (B,), mask (B, T - 1))`, float32.

        `nll = -sum_t log p(y_t)` and `regulariser = sum_i (1 - sum_t alpha_ti)^2`,
        both over the caption's real steps only (padding masked).
        """
        targets = ops.cast(tokens, "int32")[:, 1:]
        mask = ops.cast(ops.not_equal(targets, PAD), "float32")
        log_probs = ops.log_softmax(ops.cast(y_pred["logits"], "float32"), axis=-1)
        picked = ops.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
        nll = -ops.sum(picked * mask, axis=-1)
        attention_sum = ops.sum(ops.cast(y_pred["alpha"], "float32") * mask[..., None],
                                axis=1)
        regulariser = ops.sum(ops.square(1.0 - attention_sum), axis=-1)
        return nll, regulariser, mask

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        nll, regulariser, mask = self.caption_terms(y, y_pred)
        loss = weighted_mean(nll + self.attention_regularization * regulariser,
                             sample_weight)
        if "log_probs" in y_pred:
            rewards = ops.stop_gradient(-nll)  # log p(y | s, a)
            baselines = self.baseline(rewards, training=training, sample_weight=sample_weight)
            loss = loss + self.reward_weight * reinforce_loss(
                rewards, y_pred["log_probs"] * mask, baselines, sample_weight)
            entropy = weighted_mean(ops.sum(y_pred["entropy"] * mask, axis=-1),
                                    sample_weight)
            loss = loss - self.entropy_weight * entropy
        return loss

    # Text ---------------------------------------------------------------------------

    def tokenize(self, captions, max_length=None, strict=False):
        """Captions to token ids `(N, T)`: `<start> w_1 ... w_n <end>`, padded with 0.

        Args:
            captions: a list of strings.
            max_length: most words per caption (longer ones are cut; `<end>`
                is kept); default `max_caption_length`. `T` is the longest
                tokenised caption plus 2.
            strict: raise on a word outside the vocabulary instead of using
                `<unk>`.

        Returns:
            An int32 NumPy array.
        """
        if isinstance(captions, str):
            captions = [captions]
        max_length = check_positive_int("max_length", max_length or self.max_caption_length)
        rows = []
        for i, text in enumerate(captions):
            words = standardize_caption(text)
            if not words:
                raise ValueError(f"captions[{i}] is empty. Received: caption={text!r}")
            ids = []
            for word in words[:max_length]:
                if word not in self._index and strict:
                    raise ValueError(f"captions[{i}] has a word outside the vocabulary. "
                                     f"Received: word={word!r} in caption={text!r}")
                ids.append(self._index.get(word, UNK))
            rows.append([START] + ids + [END])
        tokens = np.zeros((len(rows), max(len(r) for r in rows)), "int32")
        for i, row in enumerate(rows):
            tokens[i, :len(row)] = row
        return tokens

    def detokenize(self, tokens):
        """Token ids to text: stops at `<end>`, skips `<pad>` and `<start>`."""
        words = []
        for token in np.asarray(tokens).reshape(-1):
            if token == END:
                break
            if token not in (PAD, START):
                words.append(self.vocabulary[int(token)])
        return " ".join(words)

    def check_tokens(self, tokens):
        """Raises a `ValueError` quoting the value unless `tokens` are valid captions."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 2 or tokens.shape[1] < 3 or not np.issubdtype(tokens.dtype,
                                                                         np.integer):
            raise ValueError("Caption tokens must be an int array (N, T) with T >= 3 "
                             f"(<start> word <end>). Received: shape={tokens.shape}, "
                             f"dtype={tokens.dtype}")
        bad = np.argwhere((tokens < 0) | (tokens >= self.vocabulary_size))
        if len(bad):
            i, j = bad[0]
            raise ValueError(f"A token is outside the vocabulary of {self.vocabulary_size} "
                             f"words. Received: tokens[{i}, {j}]={tokens[i, j]}")
        for i, row in enumerate(tokens):
            if row[0] != START or row[1] in (PAD, END):
                raise ValueError(f"Caption {i} is empty or lacks <start> ({START}). "
                                 f"Received: tokens[{i}]={row.tolist()}")
        return tokens

    def check_images(self, images):
        """Raises a `ValueError` quoting the shape unless images are `(N,) + input_shape`."""
        shape = tuple(np.shape(images))
        if shape[1:] != self.image_shape:
            raise ValueError(f"Images must have shape (N, {', '.join(map(str, self.image_shape))})"
                             f". Received: images.shape={shape}")
        return images

    def _pairs(self, x, y):
        if isinstance(x, (np.ndarray, list)) and y is not None and not isinstance(x, tuple):
            images = self.check_images(np.asarray(x, "float32"))
            if len(y) and isinstance(y[0], str):
                y = self.tokenize(y)
            tokens = self.check_tokens(y)
            if len(tokens) != len(images):
                raise ValueError("Need one caption per image. Received: "
                                 f"{len(images)} images, {len(tokens)} captions")
            return (images, tokens), tokens
        return x, y

    def fit(self, x=None, y=None, validation_data=None, **kwargs):
        """`keras.Model.fit` on `(images, captions)`: captions as strings or tokens.

        NumPy images and captions are checked (`check_images`, `check_tokens`)
        and packed as `x=(images, tokens), y=tokens`; anything else (a
        `tf.data.Dataset` of `((images, tokens), tokens)`) goes to Keras as is.
        """
        x, y = self._pairs(x, y)
        if validation_data is not None and len(validation_data) == 2:
            validation_data = self._pairs(*validation_data)
        return super().fit(x, y, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, **kwargs):
        """`keras.Model.evaluate` on `(images, captions)`, as `fit`."""
        x, y = self._pairs(x, y)
        return super().evaluate(x, y, **kwargs)

    # Beam search --------------------------------------------------------------------

    def generate(self, images, beam_width=3, max_length=None, length_penalty=1.0,
                 batch_size=64, return_beams=False):
        """Captions by beam search, with the attention weights of each word.

        At each step every live beam is extended by every word; the `2K`
        best extensions are ranked, those in the first `K` that end with
        `<end>` are finished, and the best `K` others live on. An image is done
        when it has `K` finished captions, or after `max_length` steps (live
        beams are then finished as they are), so decoding always stops. A
        caption's score is its log-probability divided by `length **
        length_penalty` (`length` counts `<end>`); the best score wins.
        `beam_width=1` is greedy decoding. Hard attention uses the expectation
        `alpha` here (no sampling).

        Args:
            images: `(N,) + input_shape`.
            beam_width: `K`.
            max_length: most decoding steps (words, `<end>` included);
                default `max_caption_length`.
            length_penalty: exponent of the length normalisation (0: none).
            batch_size: images per decoding batch.
            return_beams: also return every finished beam with its score.

        Returns:
            A dict: `captions` (list of `N` strings), `tokens` (lists of word
            ids), `attention` (one float32 array `(words, h, w)` per caption:
            the weights `alpha_t` of the step that emitted each word), `scores`
            (float64 `(N,)`, the normalised score of each returned caption), and
            `beams` (per image, a list of `(caption, score)` sorted best first)
            with `return_beams=True`.
        """
        beam_width = check_positive_int("beam_width", beam_width)
        max_length = check_positive_int("max_length", max_length or self.max_caption_length)
        length_penalty = check_number("length_penalty", length_penalty, minimum=0)
        batch_size = check_positive_int("batch_size", batch_size)
        images = self.check_images(np.asarray(images, "float32"))
        result = {"captions": [], "tokens": [], "attention": [], "scores": []}
        beams = []
        for start in range(0, len(images), batch_size):
            for out in self._beam_search(images[start:start + batch_size], beam_width,
                                         max_length, length_penalty):
                tokens, score, attention, finished = out
                result["captions"].append(self.detokenize(tokens))
                result["tokens"].append(list(tokens))
                result["attention"].append(attention.reshape((-1,) + self.feature_grid))
                result["scores"].append(score)
                beams.append([(self.detokenize(t), s) for t, s, _ in finished])
        result["scores"] = np.asarray(result["scores"], "float64")
        if return_beams:
            result["beams"] = beams
        return result

    def _beam_search(self, images, k, max_length, length_penalty):
        n = len(images)
        annotations, projected, h, c = self.encode(ops.convert_to_tensor(images))
        repeat = np.repeat(np.arange(n), k)
        annotations = ops.take(annotations, repeat, axis=0)
        projected = ops.take(projected, repeat, axis=0)
        h, c = ops.take(h, repeat, axis=0), ops.take(c, repeat, axis=0)
        scores = np.full((n, k), -np.inf)
        scores[:, 0] = 0.0  # one live beam at the start
        tokens = [[[] for _ in range(k)] for _ in range(n)]
        alphas = [[[] for _ in range(k)] for _ in range(n)]
        previous = np.full((n * k,), START, "int32")
        finished = [[] for _ in range(n)]
        done = np.zeros(n, bool)
        for step in range(max_length):
            logits, alpha, h, c = self.decode_step(ops.convert_to_tensor(previous), h, c,
                                                   annotations, projected)
            log_p = ops.convert_to_numpy(ops.log_softmax(logits, axis=-1)).astype("float64")
            log_p[:, [PAD, START]] = -np.inf
            alpha = ops.convert_to_numpy(alpha)
            total = (scores[:, :, None] + log_p.reshape(n, k, -1)).reshape(n, -1)
            vocab = log_p.shape[-1]
            parents = np.zeros((n, k), "int64")
            new_scores = np.full((n, k), -np.inf)
            new_tokens = [[[] for _ in range(k)] for _ in range(n)]
            new_alphas = [[[] for _ in range(k)] for _ in range(n)]
            previous = np.full((n, k), END, "int32")
            for i in range(n):
                if done[i]:
                    continue
                order = np.argsort(-total[i], kind="stable")[:2 * k]
                live = 0
                for rank, flat in enumerate(order):
                    if not np.isfinite(total[i, flat]):
                        break
                    parent, word = divmod(int(flat), vocab)
                    path = tokens[i][parent] + [word]
                    weights = alphas[i][parent] + [alpha[i * k + parent]]
                    if word == END:
                        if rank < k:
                            norm = len(path) ** length_penalty
                            finished[i].append((path[:-1], total[i, flat] / norm,
                                                np.stack(weights[:-1]) if len(path) > 1
                                                else np.zeros((0, alpha.shape[-1]))))
                        continue
                    parents[i, live] = parent
                    new_scores[i, live] = total[i, flat]
                    new_tokens[i][live], new_alphas[i][live] = path, weights
                    previous[i, live] = word
                    live += 1
                    if live == k:
                        break
                if len(finished[i]) >= k:
                    done[i] = True
                elif step == max_length - 1:  # the cap: live beams finish as they are
                    for b in range(live):
                        norm = len(new_tokens[i][b]) ** length_penalty
                        finished[i].append((new_tokens[i][b], new_scores[i, b] / norm,
                                            np.stack(new_alphas[i][b])))
            if done.all():
                break
            gather = (np.arange(n)[:, None] * k + parents).reshape(-1)
            h, c = ops.take(h, gather, axis=0), ops.take(c, gather, axis=0)
            scores, tokens, alphas = new_scores, new_tokens, new_alphas
            previous = previous.reshape(-1)
        for i in range(n):
            ranked = sorted(finished[i], key=lambda f: -f[1])
            best = ranked[0]
            yield (best[0], float(best[1]), best[2].astype("float32"),
                   [(t, float(s), a) for t, s, a in ranked])


__all__ = ["ShowAttendTell", "build_vocabulary", "standardize_caption", "SPECIAL_TOKENS"]
