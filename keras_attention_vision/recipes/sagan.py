"""Recipe `sagan`: a self-attention GAN on MNIST digits, samples saved as a grid.

`kav train sagan` trains `SAGAN(SAGANGenerator(), SAGANDiscriminator())`
(self-attention at 14x14 in both networks, spectral normalisation, hinge
loss) with `fit` on the embedded MNIST training digits scaled to `[-1, 1]`,
and saves a grid of generated digits (`samples.png`), a grid of real ones for
comparison (`real.png`), the attention map of one generated sample
(`attention.png`) and the loss per epoch (`results.json`).
"""

import json
import os
import time

NAME = "sagan"
HELP = "Self-Attention GAN (Zhang et al. 2019) on MNIST digits, hinge loss"


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--latent-dim", type=int, default=64)
    parser.add_argument("--base-channels", type=int, default=32)
    parser.add_argument("--train-size", type=int, default=None,
                        help="use the first N training digits (default: all 4,000)")
    parser.add_argument("--samples", type=int, default=64)


def _attention_picture(gan, path, seed):
    import keras

    from keras_attention_vision.visualization.non_local import save_non_local_attention

    generator = gan.generator
    layer = generator.get_layer("self_attention")
    probe = keras.Model(generator.inputs, [layer.input, generator.outputs[0]])
    z = keras.random.normal((4, gan.latent_dim), seed=seed)
    features, images = probe(z, training=False)
    _, scores = layer(features, training=False, return_attention_scores=True)
    h, w = features.shape[1:3]
    queries = [(h // 2, w // 2), (h // 4, w // 2), (h // 2, w // 4), (3 * h // 4, w // 2)]
    images = (keras.ops.convert_to_numpy(images) + 1.0) / 2.0
    return save_non_local_attention(images, keras.ops.convert_to_numpy(scores), queries,
                                    (h, w), (h // 2, w // 2), path)


def train(args):
    import keras
    import numpy as np

    from keras_attention_vision.applications import SAGAN, SAGANDiscriminator, SAGANGenerator
    from keras_attention_vision.datasets import load_mnist
    from keras_attention_vision.visualization.image_grid import save_image_grid

    os.makedirs(args.output_dir, exist_ok=True)
    (x_train, _), _ = load_mnist(source="embedded", verbose=False)
    if args.train_size:
        x_train = x_train[:args.train_size]
    images = (x_train.astype("float32") / 127.5 - 1.0)[..., None]
    keras.utils.set_random_seed(args.seed)
    gan = SAGAN(SAGANGenerator(args.latent_dim, (28, 28, 1), args.base_channels),
                SAGANDiscriminator((28, 28, 1), args.base_channels), seed=args.seed)
    gan.compile(optimizer=keras.optimizers.Adam(args.learning_rate, beta_1=0.0,
                                                beta_2=0.9))
    start = time.perf_counter()
    history = gan.fit(images, batch_size=args.batch_size, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    samples = (gan.generate(args.samples, seed=args.seed) + 1.0) / 2.0
    save_image_grid(samples, os.path.join(args.output_dir, "samples.png"), cols=8)
    save_image_grid(x_train[:args.samples] / 255.0,
                    os.path.join(args.output_dir, "real.png"), cols=8)
    _attention_picture(gan, os.path.join(args.output_dir, "attention.png"), args.seed)
    gamma_g = float(keras.ops.convert_to_numpy(
        gan.generator.get_layer("self_attention").gamma))
    figures = {
        "final_loss": float(history.history["loss"][-1]),
        "generator_attention_gamma": gamma_g,
        "sample_mean": float(np.mean(samples)),
        "real_mean": float(np.mean(x_train / 255.0)),
        "train_seconds": seconds,
    }
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({**figures, "loss_per_epoch": history.history["loss"],
                   "backend": keras.backend.backend()}, f, indent=2)
    print(f"[sagan] samples written to {os.path.join(args.output_dir, 'samples.png')}")
    return figures


def demo(args):
    """A short version: 1,000 digits, 2 epochs, narrower networks."""
    args.train_size, args.epochs, args.base_channels = 1000, 2, 16
    return train(args)
