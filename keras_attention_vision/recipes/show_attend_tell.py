"""Recipe `show-attend-tell`: soft and hard attention captioners on the shapes-captions set.

`kav train show-attend-tell` generates the shapes-captions data (32x32 images,
1-3 coloured shapes on a textured background, 4 reference captions each),
trains `ShowAttendTell` with soft attention and with hard attention on every
(image, reference) pair, decodes the test images with beam search, and writes
BLEU-1..4 (nltk's corpus BLEU against the 4 references), the attention
correctness (when a caption names a shape, is the attention maximum inside its
box, and what share of the attention is there) to `results.md` /
`results.json`, and the attention of each word of a few captions to
`attention_soft.png` / `attention_hard.png`.

Two defaults differ from the paper (applications/show_attend_tell/README.md
measures why): the encoder's annotation vectors see 10 pixels (`--receptive-field
20`: the wider encoder), and the doubly stochastic regulariser is off (`--lambda
1`: the paper's).
"""

import json
import os

NAME = "show-attend-tell"
HELP = "soft and hard attention captioners (Xu et al. 2015) on the shapes-captions set"


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--train-images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=300)
    parser.add_argument("--beam-width", type=int, default=3)
    parser.add_argument("--units", type=int, default=128)
    parser.add_argument("--receptive-field", type=int, default=10, choices=[10, 20],
                        help="receptive field (pixels) of the encoder's annotation "
                        "vectors on their 4-pixel grid (20: the earlier, wider encoder; "
                        "see applications/show_attend_tell/README.md)")
    parser.add_argument("--attention", nargs="+", default=["soft", "hard"],
                        choices=["soft", "hard"], help="which models to train")
    parser.add_argument("--lambda", dest="attention_regularization", type=float,
                        default=0.0, help="doubly stochastic regularisation weight "
                        "(the paper: 1; see applications/show_attend_tell/README.md)")
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, "show_attend_tell_shapes")


def _data(args):
    from keras_attention_vision.datasets import caption_pairs, make_shapes_captions

    train = make_shapes_captions(args.train_images, seed=args.seed)
    test = make_shapes_captions(args.test_images, seed=args.seed + 1)
    indices, texts = caption_pairs(train["captions"])
    return train, test, indices, texts


def _train_one(mode, data, args):
    import keras

    from keras_attention_vision.applications import ShowAttendTell, build_vocabulary

    train, _, indices, texts = data
    keras.utils.set_random_seed(args.seed)
    model = ShowAttendTell(build_vocabulary(texts), input_shape=(32, 32, 3),
                           attention=mode, units=args.units,
                           encoder_receptive_field=args.receptive_field,
                           attention_regularization=args.attention_regularization,
                           max_caption_length=16, seed=args.seed)
    schedule = keras.optimizers.schedules.CosineDecay(
        args.learning_rate, args.epochs * -(-len(texts) // args.batch_size), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=5.0))
    from keras_attention_vision.recipes._checkpoint import fit  # resumable (kav train)

    history = fit(model, train["images"][indices], texts, args=args, name=mode,
                  batch_size=args.batch_size, epochs=args.epochs)
    return model, history.train_seconds  # earlier runs' epochs included


def evaluate_model(model, test, beam_width=3):
    """BLEU-1..4 and attention correctness of `model` on a shapes-captions split."""
    from keras_attention_vision.metrics import attention_correctness, bleu_scores

    out = model.generate(test["images"], beam_width=beam_width)
    figures = bleu_scores(test["captions"], out["captions"])
    correctness = attention_correctness(out["attention"], out["captions"],
                                        test["objects"], image_shape=(32, 32))
    phrase = attention_correctness(out["attention"], out["captions"], test["objects"],
                                   image_shape=(32, 32), words="phrase")
    figures.update({"attention_correctness": correctness["correctness"],
                    "attention_mass": correctness["mass"],
                    "scored_words": correctness["words"],
                    "attention_correctness_phrase": phrase["correctness"],
                    "attention_mass_phrase": phrase["mass"]})
    return figures, out


def attention_picture(test, out, path, count=4):
    """Saves, for `count` test images, the attention of each generated word."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from keras_attention_vision.metrics import upsample_maps

    columns = 1 + max(len(out["attention"][i]) for i in range(count))
    fig, axes = plt.subplots(count, columns, figsize=(1.3 * columns, 1.5 * count))
    axes = np.atleast_2d(axes)
    for i in range(count):
        image = test["images"][i]
        words = out["captions"][i].split()
        axes[i, 0].imshow(image)
        axes[i, 0].set_title("image", fontsize=7)
        maps = upsample_maps(out["attention"][i], image.shape[:2], "bilinear")
        for t in range(columns - 1):
            ax = axes[i, t + 1]
            if t < len(words):
                ax.imshow(image)
                ax.imshow(maps[t], cmap="magma", alpha=0.6)
                ax.set_title(words[t], fontsize=7)
        for ax in axes[i]:
            ax.axis("off")
    fig.suptitle("Show, Attend and Tell: the attention (bright) behind each generated "
                 "word", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load(args):
    """The captioner of `--weights` (a preset, or a file of the recipe's first model)."""
    from keras_attention_vision.applications import ShowAttendTell, build_vocabulary
    from keras_attention_vision.datasets import make_shapes_captions
    from keras_attention_vision.recipes import _weights

    def build():
        texts = _data(args)[3]  # the vocabulary of the training captions
        return ShowAttendTell(build_vocabulary(texts), input_shape=(32, 32, 3),
                              attention=args.attention[0], units=args.units,
                              encoder_receptive_field=args.receptive_field,
                              max_caption_length=16, seed=args.seed)

    model, info = _weights.load(args, "ShowAttendTell", "show_attend_tell_shapes", build)
    _weights.recipe_args(args, info, ("seed", "test_images", "beam_width"))
    return model, make_shapes_captions(args.test_images, seed=args.seed + 1), info


def evaluate(args):
    """BLEU-1..4 and attention correctness of trained weights on the test images."""
    from keras_attention_vision.recipes import _weights

    model, test, info = _load(args)
    figures, _ = evaluate_model(model, test, args.beam_width)
    figures = {"weights": args.weights or "show_attend_tell_shapes",
               **{k: round(float(v), 4) for k, v in figures.items()}}
    return _weights.compare(figures, info, "bleu4")


def visualize(args):
    """The attention behind each generated word, for four test images."""
    model, test, _ = _load(args)
    os.makedirs(args.output_dir, exist_ok=True)
    out = model.generate(test["images"][:4], beam_width=args.beam_width)
    path = os.path.join(args.output_dir, "attention.png")
    attention_picture(test, out, path, count=min(4, len(out["captions"])))
    print(f"show-attend-tell: attention of each word written to {path}")
    return {"attention_png": path}


def train(args):
    os.makedirs(args.output_dir, exist_ok=True)
    data = _data(args)
    test = data[1]
    results, rows = {}, []
    for mode in args.attention:
        model, seconds = _train_one(mode, data, args)
        figures, out = evaluate_model(model, test, args.beam_width)
        figures["train_seconds"] = seconds
        results[mode] = figures
        model.save(os.path.join(args.output_dir, f"show_attend_tell_{mode}.keras"))
        attention_picture(test, out, os.path.join(args.output_dir,
                                                  f"attention_{mode}.png"))
        rows.append(
            f"| {mode} | " + " | ".join(f"{100 * figures[f'bleu{n}']:.1f}" for n in range(1, 5))
            + f" | {100 * figures['attention_correctness']:.1f}%"
            f" | {100 * figures['attention_mass']:.1f}% |")
        print(f"{mode}: " + ", ".join(f"{k}={v:.4g}" for k, v in figures.items()),
              flush=True)
    setting = (f"shapes-captions 32x32, {args.train_images} train / {args.test_images} test "
               f"images, 4 references each, {args.epochs} epochs, beam {args.beam_width}, "
               f"encoder receptive field {args.receptive_field} px, "
               f"lambda {args.attention_regularization:g}, seed {args.seed}")
    table = ("| attention | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | attention correct | "
             "attention mass in box |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(f"{setting}\n\n{table}\n")
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({**results, "setting": setting}, f, indent=2)
    print(table)
    flat = {}
    for mode, figures in results.items():
        flat[f"{mode}_bleu4"] = figures["bleu4"]
        flat[f"{mode}_attention_correctness"] = figures["attention_correctness"]
    return flat


def demo(args):
    """A short version: soft attention only, 300 images, 3 epochs (captions not yet good)."""
    args.train_images, args.test_images, args.epochs = 300, 50, 3
    args.attention, args.units = ["soft"], 64
    return train(args)
