"""Recipe `ram`: the Recurrent Attention Model on MNIST, translated and cluttered MNIST.

`kav train ram --preset mnist|translated|cluttered60|cluttered100` trains one of
the paper's configurations on the embedded MNIST split (4,000 train / 1,000
test digits), reports the test error with the mean path (M=1) and with 10
averaged sampled rollouts (M=10), saves the model, a results JSON and a PNG of
the glimpse paths. cluttered100 is a curriculum: the same command first trains
cluttered60 (`--curriculum-epochs`, its files beside the run's), whose model
starts the 100x100 run.
"""

import argparse
import json
import os

NAME = "ram"
HELP = "Recurrent Attention Model (Mnih et al. 2014), trained with REINFORCE"
#: Units of the figures whose names do not say them (`report.unit_of`).
UNITS = {"curriculum_test_error_m1": "%"}

#: Paper error rates (arXiv v1, 1406.6247v1) of the row each preset reproduces.
PAPER_ERRORS = {
    "mnist": ("6 glimpses, 8x8, 1 scale", 1.29),
    "translated": ("8 glimpses, 12x12, 3 scales", 1.84),
    "cluttered60": ("8 glimpses, 12x12, 4 scales", 5.23),
    "cluttered100": ("8 glimpses, 12x12, 4 scales", 10.83),
}
#: The test canvases of a run are drawn with seed TEST_SEED + its --seed.
TEST_SEED = 10_000
CANVAS = {"translated": (60, 0), "cluttered60": (60, 4), "cluttered100": (100, 8)}
#: The options whose default depends on the preset (left unset on the command
#: line): each preset's recipe-default row in applications/ram/README.md.
#: `digit_augment` "none" is the paper's data; `location_range` 1.0 the
#: paper's policy (the whole canvas).
PRESET_DEFAULTS = {
    "mnist": {"epochs": 300, "std_final": 0.02, "location_range": 1.0},
    # issue 15: a wider glimpse network and a final std of 0.05, with more epochs;
    # translated also an LSTM core (the paper's ReLU RNN: `--core rnn`)
    "translated": {"epochs": 500, "digit_augment": "affine", "std_final": 0.05,
                   "glimpse_hidden": 256, "glimpse_units": 512, "location_range": 1.0,
                   "core": "lstm"},
    "cluttered60": {"epochs": 450, "digit_augment": "none", "std_final": 0.05,
                    "glimpse_hidden": 256, "glimpse_units": 512, "location_range": 1.0},
    # a curriculum, 105 epochs of cluttered60 first (`--curriculum-epochs`,
    # with this preset's model options), and the convolutional glimpse
    # encoder (seventh round): about 40 minutes alone for both stages; the
    # REINFORCE gradient into the core in the second stage only (eighth round:
    # from scratch it trains the first stage far slower)
    "cluttered100": {"epochs": 160, "digit_augment": "none", "std_final": 0.05,
                     "glimpse_hidden": 256, "glimpse_units": 512, "location_range": 1.0,
                     "glimpse_encoder": "conv", "curriculum_epochs": 105,
                     "policy_to_core": True},
}
#: The preset whose model starts each curriculum preset's run.
CURRICULUM = {"cluttered100": "cluttered60"}
#: The options that shape the model's weights (passed to it when set); a
#: curriculum's first stage takes the curriculum preset's defaults of these,
#: so that its model can start the second stage.
ARCHITECTURE_OPTIONS = ("core", "core_units", "glimpse_hidden", "glimpse_units",
                        "glimpse_encoder", "baseline", "location_hidden")
#: The options of the model's heads, each with the layer it shapes:
#: `initialize_from` copies every other weight when only these differ.
HEAD_OPTIONS = {"baseline": "baseline", "location_hidden": "location"}
#: The model's options of its training only (passed to it when set; a
#: curriculum's first stage takes these defaults too).
TRAINING_OPTIONS = ("rollouts_per_image",)


def preset_defaults(args):
    """Fills the options left unset (`None`) with the preset's defaults; returns `args`.

    So the run's results JSON records the settings in effect.
    """
    for name, value in PRESET_DEFAULTS[args.preset].items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    return args


def add_arguments(parser):
    parser.add_argument("--preset", default="mnist", choices=list(PAPER_ERRORS),
                        help="the paper's configuration (default: mnist)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs (default: the preset's, PRESET_DEFAULTS: "
                        "300 for mnist, 500 for translated, 450 for cluttered60, 160 "
                        "for cluttered100)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3,
                        help="peak Adam learning rate, cosine-decayed to 0")
    parser.add_argument("--std", type=float, default=0.15,
                        help="std of the Gaussian location policy (at the start)")
    parser.add_argument("--std-final", type=float, default=None,
                        help="anneal the std geometrically to this value, in "
                        "--std-stages steps (default: 0.02 for mnist, 0.05 for the "
                        "canvas presets; equal to --std: fixed)")
    parser.add_argument("--std-stages", type=int, default=4)
    parser.add_argument("--core", choices=["rnn", "lstm"], default=None,
                        help="core network (default: the model preset's, a ReLU RNN for "
                        "mnist and an LSTM for the cluttered presets as in the paper; "
                        "an LSTM for translated, where the paper has the RNN)")
    parser.add_argument("--core-units", type=int, default=None,
                        help="width of h_t (default: the preset's, 256)")
    parser.add_argument("--glimpse-hidden", type=int, default=None,
                        help="hidden width of the glimpse network (default: 128 for "
                        "mnist, 256 for the canvas presets)")
    parser.add_argument("--glimpse-units", type=int, default=None,
                        help="width of g_t (default: 256 for mnist, 512 for the canvas "
                        "presets)")
    parser.add_argument("--glimpse-encoder", choices=["dense", "conv"], default=None,
                        help="'dense': the paper's Lin(rho) on the raw retina; 'conv': "
                        "a small convolutional stack on the retina before it (not the "
                        "paper's; default: conv for cluttered100, dense for the others)")
    parser.add_argument("--location-hidden", type=int, default=None,
                        help="width of a ReLU hidden layer of the location network "
                        "(default: 0, the paper's linear mean Lin(h_t))")
    parser.add_argument("--baseline", choices=["learned", "moving_average",
                                               "leave_one_out"], default=None,
                        help="the REINFORCE baseline: 'learned' (the paper's b_t = "
                        "Lin(h_t)), 'moving_average', or 'leave_one_out' (the mean "
                        "reward of the image's other --rollouts-per-image rollouts; "
                        "not the paper's) (default: learned)")
    parser.add_argument("--rollouts-per-image", type=int, default=None,
                        help="sampled rollouts of each training image per step, so a "
                        "batch costs --batch-size times this many rollouts (default: 1, "
                        "the paper's)")
    parser.add_argument("--policy-to-core", action=argparse.BooleanOptionalAction,
                        default=None,
                        help="let the REINFORCE gradient train the core and glimpse "
                        "networks too; --no-policy-to-core: the location network only "
                        "(default: on for cluttered100, whose curriculum's first stage "
                        "has it off; off for the others)")
    parser.add_argument("--glimpses", type=int, default=None,
                        help="number of glimpses (default: the preset's)")
    parser.add_argument("--shift", type=int, default=2,
                        help="mnist: random translations of up to this many pixels "
                        "(fresh every epoch); other presets redraw canvases every epoch")
    parser.add_argument("--rotate", type=float, default=10.0,
                        help="mnist and --digit-augment affine: random rotations of up to "
                        "this many degrees")
    parser.add_argument("--zoom", type=float, default=0.1,
                        help="mnist and --digit-augment affine: random zoom in "
                        "[1 - zoom, 1 + zoom]")
    parser.add_argument("--digit-augment", choices=["none", "affine"], default=None,
                        help="translated/cluttered presets: 'affine' rotates and zooms "
                        "each training digit (--rotate, --zoom, fresh every epoch) "
                        "before placing it on its canvas; 'none' (the paper's data): "
                        "the digits as they are (default: affine for translated, "
                        "none for the cluttered presets)")
    parser.add_argument("--location-range", type=float, default=None,
                        help="bound of the location policy's mean in [-1, 1] canvas "
                        "units, in (0, 1]: mean = RANGE * tanh(Lin(h)); the sampling "
                        "noise keeps --std (default: 1.0, the paper's policy over "
                        "the whole canvas, in every preset)")
    parser.add_argument("--normalize-advantage", action="store_true",
                        help="standardise the REINFORCE advantage R - b over each "
                        "batch: (A - mean) / std (default: off, the paper's estimator)")
    parser.add_argument("--initial-weights", default=None, metavar="MODEL.keras",
                        help="start from the weights of a RAM saved by an earlier run "
                        "(its ram_PRESET.keras), e.g. a cluttered60 model for "
                        "cluttered100 in place of the curriculum's first stage; the "
                        "architecture must be this run's, the canvas may differ; "
                        "another --baseline or --location-hidden starts that head "
                        "afresh (default: a fresh initialisation)")
    parser.add_argument("--curriculum-epochs", type=int, default=None,
                        help="cluttered100: first train this many epochs of cluttered60 "
                        "(same options and seed; its files land beside the run's), whose "
                        "model starts the cluttered100 run; 0 trains cluttered100 from "
                        "scratch, as the paper does (default: 105)")
    parser.add_argument("--samples", type=int, default=10,
                        help="M of the Monte Carlo test-time average (reported beside M=1)")
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile the train step with XLA on TensorFlow too (Keras "
                        "leaves XLA off on CPU-only TensorFlow; JAX always compiles): "
                        "3-4x faster epochs for the 3- and 4-scale presets here")
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, "ram_mnist")


def shift_images(images, max_shift, rng):
    """Translates each image by up to `max_shift` pixels (zero fill), NumPy."""
    import numpy as np

    if max_shift <= 0:
        return images
    n, h, w = images.shape[:3]
    p = max_shift
    padded = np.pad(images, ((0, 0), (p, p), (p, p)) + ((0, 0),) * (images.ndim - 3))
    dy, dx = rng.integers(0, 2 * p + 1, size=(2, n))
    rows = dy[:, None, None] + np.arange(h)[None, :, None]
    cols = dx[:, None, None] + np.arange(w)[None, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols]


def affine_images(images, max_shift, max_degrees, max_zoom, rng):
    """Random small rotations, zooms and translations (bilinear, zero fill), NumPy.

    Args:
        images: `(N, H, W, 1)` or `(N, H, W)` float images.
        max_shift: pixels; max_degrees: degrees; max_zoom: relative scale.
        rng: a NumPy generator.
    """
    import numpy as np
    from scipy import ndimage

    squeeze = images.ndim == 4
    stack = images[..., 0] if squeeze else images
    n, h, w = stack.shape
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees, n))
    zoom = rng.uniform(1 - max_zoom, 1 + max_zoom, n)
    shift = rng.uniform(-max_shift, max_shift, (2, n))
    cos, sin = np.cos(angle) / zoom, np.sin(angle) / zoom
    rows, cols = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2,
                             indexing="ij")
    # Output pixel p reads input pixel R(-angle) p / zoom + centre - shift.
    src_r = cos[:, None, None] * rows + sin[:, None, None] * cols
    src_c = -sin[:, None, None] * rows + cos[:, None, None] * cols
    src_r = src_r + (h - 1) / 2 - shift[0][:, None, None]
    src_c = src_c + (w - 1) / 2 - shift[1][:, None, None]
    index = np.broadcast_to(np.arange(n)[:, None, None], src_r.shape)
    out = ndimage.map_coordinates(stack, [index, src_r, src_c], order=1, cval=0.0)
    out = out.astype("float32")
    return out[..., None] if squeeze else out


def _data(preset, seed, digit_augment=None):
    """`(train_epoch(rng), x_test, y_train, y_test)` of a preset.

    `digit_augment(digits, rng)`, if given, transforms the `(N, 28, 28)`
    training digits (floats in [0, 1]) before they are placed on the canvases.
    """
    from keras_attention_vision.datasets import load_mnist, make_cluttered_mnist

    (x_train, y_train), (x_test, y_test) = load_mnist("embedded", verbose=False)
    if preset == "mnist":
        def train_epoch(rng):
            return x_train[..., None].astype("float32") / 255.0

        return train_epoch, (x_test[..., None].astype("float32") / 255.0), y_train, y_test
    size, clutter = CANVAS[preset]
    x_test_c, _ = make_cluttered_mnist(x_test, size, clutter, seed=TEST_SEED + seed)

    def train_epoch(rng):
        digits = x_train
        if digit_augment is not None:
            digits = digit_augment(x_train.astype("float32") / 255.0, rng)
        return make_cluttered_mnist(digits, size, clutter,
                                    seed=int(rng.integers(2**31)))[0]

    return train_epoch, x_test_c, y_train, y_test


def _digit_augment_choice(args):
    """The `--digit-augment` in effect (`None` for mnist, which has its own options).

    Raises:
        ValueError: `--digit-augment` given with the mnist preset (it would be
            ignored: mnist augments with --shift, --rotate and --zoom).
    """
    given = getattr(args, "digit_augment", None)
    if args.preset == "mnist":
        if given is not None:
            raise ValueError("--digit-augment is for the translated and cluttered "
                             "presets; the mnist preset augments with --shift, --rotate "
                             f"and --zoom. Received: --digit-augment {given}")
        return None
    return preset_defaults(args).digit_augment


def _digit_augment(args):
    """`--digit-augment affine` of the canvas presets as `f(digits, rng)`, else `None`.

    Without `--digit-augment`, the preset's default (`PRESET_DEFAULTS`).

    Rotates (up to `--rotate` degrees) and zooms (`--zoom`) each digit in its
    28x28 box, without shifting it: the canvas placement stays uniform.
    """
    if _digit_augment_choice(args) != "affine":
        return None

    def augment(digits, rng):
        import numpy as np

        return np.clip(affine_images(digits, 0, args.rotate, args.zoom, rng), 0.0, 1.0)

    return augment


def _configure(seed):
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _error(model, x, y, samples):
    import numpy as np

    if samples == 1:  # the mean path: the compiled predict function
        probs = model.predict(x, batch_size=256, verbose=0)
    else:
        probs = model.predict_averaged(x, num_samples=samples)
    return float(100.0 * np.mean(probs.argmax(-1) != y))


def _std_schedule(args, epochs):
    """The policy std of each epoch: fixed, or annealed in equal stages."""
    if args.std_final is None or args.std_stages < 2:
        return [args.std] * epochs
    ratio = (args.std_final / args.std) ** (1 / (args.std_stages - 1))
    stage = [min(args.std_stages - 1, e * args.std_stages // epochs) for e in range(epochs)]
    return [float(args.std * ratio**k) for k in stage]


def _glimpse_picture(model, images, labels, path, count=6):
    """The glimpse paths of the mean path on `count` images, with labels and predictions."""
    import keras
    import numpy as np

    from keras_attention_vision.visualization.glimpses import plot_glimpse_paths

    out = model.rollout(images[:count], sample=False, return_glimpses=True)
    sensor = model.sensor
    return plot_glimpse_paths(
        images[:count], keras.ops.convert_to_numpy(out["locations"]), path,
        glimpses=keras.ops.convert_to_numpy(out["glimpses"]),
        patch_size=sensor.patch_size, num_scales=sensor.num_scales,
        scale_factor=sensor.scale_factor, labels=labels[:count],
        predictions=np.argmax(keras.ops.convert_to_numpy(out["logits"]), -1))


def _overrides(args):
    preset_defaults(args)
    overrides = {"std": args.std, "seed": args.seed, "data_format": "channels_last",
                 "policy_to_core": bool(getattr(args, "policy_to_core", False)),
                 "location_range": args.location_range,
                 "normalize_advantage": getattr(args, "normalize_advantage", False)}
    if args.glimpses:
        overrides["num_glimpses"] = args.glimpses
    for name in ARCHITECTURE_OPTIONS + TRAINING_OPTIONS:
        if getattr(args, name, None) is not None:  # a bad 0 reaches the model's check
            overrides[name] = getattr(args, name)
    return overrides


def initialize_from(model, path):
    """Copies the weights of a saved RAM into `model` (a curriculum's next stage).

    The weights of a RAM do not depend on its canvas (the retina resamples
    any image to `patch_size`), so a model trained on 60x60 canvases can start
    a run on 100x100 ones. The optimizer's state is not copied. When only
    heads differ (`HEAD_OPTIONS`: another baseline or location network),
    every other weight is copied and the differing heads keep their fresh
    initialisation.

    Args:
        model: a `RecurrentAttentionModel`, built here if it is not.
        path: a `.keras` file of a `RecurrentAttentionModel`.

    Raises:
        ValueError: not a readable RAM file, or weights of another architecture
            (the option that differs, or the first weight whose shape differs,
            is named).

    Returns:
        The heads left freshly initialised (their option names; empty when
        every weight was copied).
    """
    from keras_attention_vision.recipes._weights import _load_model

    source = _load_model(path, "RecurrentAttentionModel")
    model.build()
    theirs_config, mine_config = source.get_config(), model.get_config()
    fresh = [name for name in HEAD_OPTIONS
             if theirs_config.get(name) != mine_config.get(name)]
    for name in ARCHITECTURE_OPTIONS:
        if name not in HEAD_OPTIONS and theirs_config.get(name) != mine_config.get(name):
            raise ValueError(
                f"--initial-weights {path!r} holds a RAM of another architecture: its "
                f"{name} is {theirs_config.get(name)!r}, this run's {mine_config.get(name)!r} "
                f"(--{name.replace('_', '-')})")
    mine, theirs = model.weights, source.weights
    if fresh:  # all but the heads that differ (HEAD_OPTIONS: option -> layer)
        skipped = {HEAD_OPTIONS[name] for name in fresh}
        mine, theirs = ([w for w in weights if w.path.split("/")[1] not in skipped]
                        for weights in (mine, theirs))
    for i in range(max(len(mine), len(theirs))):
        want = tuple(mine[i].shape) if i < len(mine) else None
        got = tuple(theirs[i].shape) if i < len(theirs) else None
        if want != got:
            file_name = theirs[i].path if i < len(theirs) else None
            mine_name = mine[i].path if i < len(mine) else None
            raise ValueError(
                f"--initial-weights {path!r} holds a RAM of another architecture: weight "
                f"{i} is {file_name} {got} in the file, {mine_name} {want} in this model "
                f"({len(theirs)} weights against {len(mine)}); use the same core, widths, "
                "glimpse encoder, patch size and scales")
    for variable, value in zip(mine, theirs):
        variable.assign(value.numpy())
    return fresh


def _load(args):
    """The model of `--weights` (default `ram_<preset>`) and its preset record."""
    from keras_attention_vision.applications import RecurrentAttentionModel
    from keras_attention_vision.distributions import UnsupportedBackendError
    from keras_attention_vision.recipes import _weights
    from keras_attention_vision.reinforce import require_reinforce_backend

    try:  # on PyTorch: one line and exit status 2 from `kav`, not a traceback
        require_reinforce_backend()
    except UnsupportedBackendError as error:
        raise ValueError(str(error)) from error

    def build():
        return RecurrentAttentionModel.from_preset(args.preset, **_overrides(args))

    model, info = _weights.load(args, "RecurrentAttentionModel", f"ram_{args.preset}",
                                build)
    return model, _weights.recipe_args(args, info, ("preset", "seed")), info


def evaluate(args):
    """Test error of trained weights (a preset or a file) on the recipe's test set.

    With a preset, the data settings come from its model card, so the figure
    is the card's `test_error_m1` (mean path, deterministic); `--samples M`
    also reports the M-rollout average (sampled: it varies with the backend).
    """
    from keras_attention_vision.recipes import _weights

    model, args, info = _load(args)
    _configure(args.seed)
    _, x_test, _, y_test = _data(args.preset, args.seed)
    figures = {"weights": args.weights or f"ram_{args.preset}", "preset": args.preset,
               "test_error_m1": round(_error(model, x_test, y_test, 1), 2)}
    if args.samples > 1:
        figures[f"test_error_m{args.samples}"] = round(
            _error(model, x_test, y_test, args.samples), 2)
    return _weights.compare(figures, info, "test_error_m1")


def visualize(args):
    """Glimpse paths of trained weights on test images, with labels and predictions."""
    model, args, _ = _load(args)
    _configure(args.seed)
    _, x_test, _, y_test = _data(args.preset, args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    path = _glimpse_picture(model, x_test, y_test,
                            os.path.join(args.output_dir, f"glimpses_{args.preset}.png"))
    print(f"ram: glimpse paths written to {path}")
    return {"glimpse_png": path}


def run(args, epochs, verbose=True):
    """Trains and evaluates one preset; returns the figures (also saved as JSON)."""
    import keras
    import numpy as np

    from keras_attention_vision.applications import RecurrentAttentionModel

    preset_defaults(args)
    initial = getattr(args, "initial_weights", None)
    if initial and not os.path.isfile(initial):  # before minutes of data drawing
        raise ValueError(f"No such model file: {initial!r} (--initial-weights)")
    _configure(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    train_epoch, x_test, y_train, y_test = _data(args.preset, args.seed,
                                                 _digit_augment(args))
    model = RecurrentAttentionModel.from_preset(args.preset, **_overrides(args))
    steps = int(np.ceil(len(y_train) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate,
                                                      decay_steps=epochs * steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule), metrics=["accuracy"],
                  jit_compile=True if getattr(args, "jit_compile", False) else "auto",
                  # 16 steps per compiled call: same updates, less per-step overhead
                  steps_per_execution=16)
    from keras_attention_vision.recipes._checkpoint import EpochCheckpoint

    # kav train: a checkpoint every epoch; a rerun resumes (std from the epoch number)
    checkpoint = EpochCheckpoint(model, args, f"ram_{args.preset}")
    if initial and checkpoint.initial_epoch == 0:  # a resumed run has its own
        fresh = initialize_from(model, initial)
        if fresh and verbose:
            heads = " and ".join(f"the {HEAD_OPTIONS[name]} network ({name})"
                                 for name in fresh)
            print(f"ram: --initial-weights {initial}: {heads} differs from this run's "
                  "and starts afresh; every other weight is copied",
                  flush=True)
    b = args.batch_size  # when resuming: weights, optimizer, RNG (a batch for the trace)
    checkpoint.restore(x_test[:b], y_test[:b], batch_size=b)
    history = checkpoint.extra.get("rows", [])
    stds = _std_schedule(args, epochs)
    for epoch in range(checkpoint.initial_epoch, epochs):
        # the epoch's data is a function of (seed, epoch): a resumed run redraws it
        rng = np.random.default_rng([args.seed, epoch])
        if stds[epoch] != model.policy.std:
            model.policy.std = stds[epoch]  # a Python float: retrace the train step
            model.train_function = None
        x_train = train_epoch(rng)
        if args.preset == "mnist" and (args.rotate > 0 or args.zoom > 0):
            x_train = affine_images(x_train, args.shift, args.rotate, args.zoom, rng)
        elif args.preset == "mnist":
            x_train = shift_images(x_train, args.shift, rng)
        # the order from (seed, epoch) too: fit(shuffle=True) draws it from the
        # process's global RNG, which a resumed run has used differently
        order = rng.permutation(len(y_train))
        logs = model.fit(x_train[order], y_train[order], batch_size=args.batch_size,
                         epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                         verbose=0).history
        if (epoch + 1) % args.log_every == 0 or epoch + 1 == epochs:
            error = _error(model, x_test, y_test, 1)
            row = {"epoch": epoch + 1, "loss": float(logs["loss"][-1]),
                   "train_reward": float(logs["reward"][-1]), "test_error_m1": error,
                   "std": model.policy.std,
                   "seconds": checkpoint.train_seconds()}
            history.append(row)
            if verbose:
                print(f"ram[{args.preset}] epoch {epoch + 1}: loss {row['loss']:.3f}, "
                      f"train reward {row['train_reward']:.3f}, test error (M=1) "
                      f"{error:.2f}% ({row['seconds']:.0f} s)", flush=True)
        checkpoint.save(epoch, {k: v[-1] for k, v in logs.items()}, extra={"rows": history})
    train_seconds = checkpoint.train_seconds()  # earlier runs' epochs included
    figures = {
        "preset": args.preset,
        "digit_augment": _digit_augment_choice(args),  # the one in effect
        "location_range": model.location_range,  # the settings in effect
        "policy_to_core": model.policy_to_core,
        "normalize_advantage": model.normalize_advantage,
        "backend": keras.backend.backend(),
        "epochs": epochs,
        "train_seconds": round(train_seconds, 1),
        "test_error_m1": _error(model, x_test, y_test, 1),
        f"test_error_m{args.samples}": _error(model, x_test, y_test, args.samples),
        "paper_error": PAPER_ERRORS[args.preset][1],
        "paper_row": "arXiv v1: " + PAPER_ERRORS[args.preset][0],
    }
    model.save(os.path.join(args.output_dir, f"ram_{args.preset}.keras"))
    figures["glimpse_png"] = _glimpse_picture(
        model, x_test, y_test, os.path.join(args.output_dir, f"glimpses_{args.preset}.png"))
    with open(os.path.join(args.output_dir, f"results_{args.preset}.json"), "w") as f:
        json.dump({"figures": figures, "history": history, "args": vars(args)}, f,
                  indent=2, default=str)
    return figures


def _curriculum_first_stage(args):
    """The options of a curriculum's first stage, or `None` (no curriculum).

    Called before `preset_defaults(args)`: the first stage fills the model's
    options left unset (`ARCHITECTURE_OPTIONS`, `TRAINING_OPTIONS`) with the
    curriculum preset's defaults, the others with its own preset's. Sets `args.curriculum_epochs`
    of a curriculum preset to the epochs in effect (0: none, from scratch or
    from `--initial-weights`), as the run's results record it.

    Raises:
        ValueError: `--curriculum-epochs` for a preset without a curriculum,
            or with `--initial-weights` (which takes the first stage's place).
    """
    given = args.curriculum_epochs
    if args.preset not in CURRICULUM:
        if given:
            raise ValueError(f"--curriculum-epochs is for {sorted(CURRICULUM)} only. "
                             f"Received: --curriculum-epochs {given} --preset {args.preset}")
        return None
    if args.initial_weights and given:
        raise ValueError("--initial-weights takes the place of the curriculum's first "
                         "stage: give one of the two. Received: --curriculum-epochs "
                         f"{given} --initial-weights {args.initial_weights}")
    default = 0 if args.initial_weights else PRESET_DEFAULTS[args.preset]["curriculum_epochs"]
    args.curriculum_epochs = default if given is None else given
    if args.curriculum_epochs == 0:
        return None
    first = argparse.Namespace(**vars(args))
    first.preset, first.epochs = CURRICULUM[args.preset], args.curriculum_epochs
    first.curriculum_epochs = 0
    for name in ARCHITECTURE_OPTIONS + TRAINING_OPTIONS:
        if getattr(first, name, None) is None and name in PRESET_DEFAULTS[args.preset]:
            setattr(first, name, PRESET_DEFAULTS[args.preset][name])
    return preset_defaults(first)


def train(args):
    first = _curriculum_first_stage(args)
    preset_defaults(args)
    if first is None:
        return run(args, args.epochs)
    print(f"ram[{args.preset}]: the curriculum's first stage: {first.epochs} epochs of "
          f"{first.preset}, whose model starts this run (--curriculum-epochs 0 trains "
          "from scratch)", flush=True)
    # A resumed run finds this stage's checkpoint finished and only re-evaluates it.
    stage = run(first, first.epochs)
    args.initial_weights = os.path.join(first.output_dir, f"ram_{first.preset}.keras")
    figures = run(args, args.epochs)
    figures.update({"curriculum_preset": first.preset, "curriculum_epochs": first.epochs,
                    "curriculum_train_seconds": stage["train_seconds"],
                    "curriculum_test_error_m1": stage["test_error_m1"]})
    with open(os.path.join(args.output_dir, f"results_{args.preset}.json")) as f:
        results = json.load(f)
    results["figures"].update(figures)
    with open(os.path.join(args.output_dir, f"results_{args.preset}.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    return figures


def demo(args):
    """About a minute: 20 epochs of the 28x28 preset (far from converged)."""
    args.preset, args.log_every = "mnist", 5
    args.rotate = args.zoom = 0.0  # shifts only: the affine warp costs time
    args.std_final = args.std = 0.1
    return run(args, args.epochs or 20)
