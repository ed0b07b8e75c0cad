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
    parser.add_argument("--eval-samples", type=int, default=1000,
                        help="evaluate: generated digits compared with the test digits")
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, "sagan_generator_mnist")


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


def one_nn_accuracy(generated, real):
    """Leave-one-out 1-nearest-neighbour accuracy of telling two image sets apart.

    The two-sample test of Lopez-Paz & Oquab (2017), used for GANs by Xu et al.
    (2018): every image is labelled by its nearest neighbour (Euclidean) among
    all the others. 0.5 means the sets cannot be told apart; 1.0, always.
    Computed in NumPy, so it is the same on every backend.
    """
    import numpy as np

    x = np.concatenate([np.reshape(generated, (len(generated), -1)),
                        np.reshape(real, (len(real), -1))]).astype("float64")
    labels = np.r_[np.zeros(len(generated)), np.ones(len(real))]
    squares = np.sum(x * x, axis=1)
    distances = squares[:, None] + squares[None, :] - 2.0 * x @ x.T
    np.fill_diagonal(distances, np.inf)
    return float(np.mean(labels[np.argmin(distances, axis=1)] == labels))


def _generate(generator, count, seed):
    """`count` digits in `[0, 1]` from NumPy latents (the same on every backend)."""
    import numpy as np

    latent_dim = generator.inputs[0].shape[-1]
    z = np.random.default_rng(seed).standard_normal((count, latent_dim)).astype("float32")
    return (generator.predict(z, batch_size=256, verbose=0) + 1.0) / 2.0


def _load(args):
    from keras_attention_vision.applications import SAGANGenerator
    from keras_attention_vision.recipes import _weights

    def build():
        return SAGANGenerator(args.latent_dim, (28, 28, 1), args.base_channels)

    generator, info = _weights.load(args, "SAGANGenerator", "sagan_generator_mnist", build)
    return generator, _weights.recipe_args(args, info, ("seed",)), info


def evaluate(args):
    """How well a trained generator's digits pass for the test digits (1-NN accuracy)."""
    from keras_attention_vision.datasets import load_mnist
    from keras_attention_vision.recipes import _weights

    generator, args, info = _load(args)
    _, (x_test, _) = load_mnist(source="embedded", verbose=False)
    count = min(args.eval_samples, len(x_test))
    generated = _generate(generator, count, args.seed)
    figures = {"weights": args.weights or "sagan_generator_mnist",
               "nn_accuracy": round(one_nn_accuracy(generated, x_test[:count] / 255.0), 4),
               "sample_mean": round(float(generated.mean()), 4),
               "real_mean": round(float((x_test[:count] / 255.0).mean()), 4)}
    return _weights.compare(figures, info, "nn_accuracy")


def visualize(args):
    """A grid of generated digits and the generator's attention maps, with titles."""
    import types

    from keras_attention_vision.recipes._weights import save_titled_grid

    generator, args, _ = _load(args)
    os.makedirs(args.output_dir, exist_ok=True)
    name = args.weights or "sagan_generator_mnist"
    samples = _generate(generator, args.samples, args.seed)
    samples_png = save_titled_grid(
        samples, os.path.join(args.output_dir, "samples.png"),
        f"SAGAN generator samples ({os.path.basename(name)}, seed {args.seed})",
        [f"z #{i + 1}" for i in range(len(samples))])
    shim = types.SimpleNamespace(generator=generator,
                                 latent_dim=generator.inputs[0].shape[-1])
    attention_png = _attention_picture(shim, os.path.join(args.output_dir, "attention.png"),
                                       args.seed)
    print(f"sagan: pictures written to {args.output_dir}")
    return {"samples_png": samples_png, "attention_png": attention_png}


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
    from keras_attention_vision.recipes._checkpoint import fit  # resumable (kav train)

    history = fit(gan, images, args=args, name="sagan", batch_size=args.batch_size,
                  epochs=args.epochs)
    seconds = history.train_seconds  # earlier runs' epochs included
    samples = (gan.generate(args.samples, seed=args.seed) + 1.0) / 2.0
    save_image_grid(samples, os.path.join(args.output_dir, "samples.png"), cols=8,
                    title=f"SAGAN: {len(samples)} generated digits "
                    f"(after {args.epochs} epochs)")
    save_image_grid(x_train[:args.samples] / 255.0,
                    os.path.join(args.output_dir, "real.png"), cols=8,
                    title=f"Real MNIST digits ({args.samples}), for comparison")
    _attention_picture(gan, os.path.join(args.output_dir, "attention.png"), args.seed)
    # the generator alone, loadable by SAGANGenerator(weights=...) (presets)
    gan.generator.save_weights(os.path.join(args.output_dir, "generator.weights.h5"))
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
