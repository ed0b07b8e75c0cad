"""Recipe `visual-search`: a REINFORCE-trained agent finds a named digit in a scene.

`kav train visual-search` trains `VisualSearchAgent` on 100x100 scenes of 3-6
non-overlapping embedded MNIST digits (a quarter of them without the target),
redrawn every epoch from the 4,000 training digits, and evaluates on 1,000
fixed scenes of the 1,000 test digits: success within K fixations, mean
fixations to find the target and false "found" rate, for the learned agent and
for two baselines with the same fovea and the same "found" decision (random
fixations, the exhaustive raster scan), plus the same fixations with a perfect
recogniser. It writes `results.json`, `table.md`, the model and
`search_paths.png`.
"""

import json
import os

NAME = "visual-search"
HELP = "Visual search agent (Minut & Mahadevan 2001): REINFORCE fixations find a digit"

ROWS = (("agent", "policy"), ("random", "random"), ("raster", "raster"))
#: The shipped preset `kav evaluate/visualize visual-search` use by default.
PRESET = "visual_search_agent_mnist"


def add_arguments(parser):
    parser.add_argument("--epochs", type=int, default=80,
                        help="training epochs, fresh scenes each (default: 80)")
    parser.add_argument("--fixations", type=int, default=10,
                        help="K, the most fixations per search (default: 10)")
    parser.add_argument("--train-scenes", type=int, default=4000,
                        help="scenes per epoch (default: 4000)")
    parser.add_argument("--test-scenes", type=int, default=1000)
    parser.add_argument("--absent-fraction", type=float, default=0.25,
                        help="share of scenes without the target (default: 0.25)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3,
                        help="peak Adam learning rate, cosine-decayed to 0")
    parser.add_argument("--std", type=float, default=0.2,
                        help="std of the Gaussian fixation policy ([-1, 1] units)")
    parser.add_argument("--fixation-cost", type=float, default=0.02)
    parser.add_argument("--false-found-penalty", type=float, default=1.0)
    parser.add_argument("--hit-reward", type=float, default=1.0,
                        help="reward for the first fixation on the target (shaping)")
    parser.add_argument("--no-hit-reward", action="store_true",
                        help="the issue's rewards only (hit reward 0)")
    parser.add_argument("--fixation-reward", choices=["hits", "return"], default="hits",
                        help="what the fixation policy learns from: the hit reward and "
                        "the fixation cost (hits, default) or the full return")
    parser.add_argument("--entropy-weight", type=float, default=0.001,
                        help="entropy bonus of the found decision")
    parser.add_argument("--recognition-weight", type=float, default=2.0,
                        help="weight of the supervised shaping of the found logits "
                        "(fixation on the target or not)")
    parser.add_argument("--no-recognition-shaping", action="store_true",
                        help="train from the reward alone (recognition weight 0)")
    parser.add_argument("--warmup-epochs", type=int, default=None,
                        help="first epochs in which the fixation policy is not trained "
                        "(the found decision learns first; default: a quarter)")
    parser.add_argument("--initial-found-probability", type=float, default=0.01,
                        help="P(found) of the stop policy at the start of training, "
                        "in (0, 1) (default: 0.01)")
    parser.add_argument("--core-units", type=int, default=128)
    parser.add_argument("--log-every", type=int, default=5)
    parser.add_argument("--jit-compile", action="store_true",
                        help="compile the train step with XLA on TensorFlow too")
    from keras_attention_vision.recipes._weights import add_weights_argument

    add_weights_argument(parser, PRESET)


def _configure(seed):
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _scenes(args, images, labels, count, seed):
    from keras_attention_vision.datasets import make_search_scenes

    return make_search_scenes(images, labels, count, absent_fraction=args.absent_fraction,
                              seed=seed)


def format_table(rows, k):
    """The Markdown table of `{name: search figures}` (agent, baselines, oracles)."""
    lines = [f"| fixations | found decision | success within K={k} | correct found "
             "(target present) | mean fixations to find | mean fixations, present "
             "(miss = K) | false found rate |",
             "|---|---|---|---|---|---|---|"]
    for oracle in (False, True):
        for name, figures in rows.items():
            p = "oracle_" if oracle else ""
            lines.append(
                f"| {name} | {'perfect recogniser' if oracle else 'the agent'} | "
                f"{100 * figures[p + 'success_within_k']:.1f}% | "
                f"{100 * figures[p + 'found_rate_present']:.1f}% | "
                f"{figures[p + 'mean_fixations_to_find']:.2f} | "
                f"{figures[p + 'mean_fixations_present']:.2f} | "
                f"{100 * figures[p + 'false_found_rate']:.1f}% |")
    return "\n".join(lines)


def run(args, epochs, verbose=True):
    """Trains and evaluates the agent; returns the figures (also saved as JSON)."""
    import keras
    import numpy as np

    from keras_attention_vision.applications import VisualSearchAgent
    from keras_attention_vision.datasets import load_mnist
    _configure(args.seed)
    os.makedirs(args.output_dir, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = load_mnist("embedded", verbose=False)
    test = _scenes(args, x_test, y_test, args.test_scenes, 10_000 + args.seed)
    recognition = 0.0 if args.no_recognition_shaping else args.recognition_weight
    agent = VisualSearchAgent(
        num_fixations=args.fixations, std=args.std, fixation_cost=args.fixation_cost,
        false_found_penalty=args.false_found_penalty,
        hit_reward=0.0 if args.no_hit_reward else args.hit_reward,
        fixation_reward=args.fixation_reward,
        entropy_weight=args.entropy_weight, recognition_weight=recognition,
        core_units=args.core_units, data_format="channels_last", seed=args.seed,
        initial_found_probability=args.initial_found_probability)
    warmup = epochs // 4 if args.warmup_epochs is None else min(args.warmup_epochs, epochs)
    steps = int(np.ceil(args.train_scenes / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate,
                                                      decay_steps=max(1, epochs * steps))
    agent.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0),
                  jit_compile=True if args.jit_compile else "auto",
                  steps_per_execution=8)
    from keras_attention_vision.recipes._checkpoint import EpochCheckpoint

    # kav train: a checkpoint every epoch; a rerun resumes (the warm-up and the
    # scenes are functions of the epoch number)
    checkpoint = EpochCheckpoint(agent, args, "visual_search")
    b = args.batch_size
    checkpoint.restore((test["scenes"][:b], test["targets"][:b]), test["target_boxes"][:b],
                       batch_size=b)
    history = checkpoint.extra.get("rows", [])
    for epoch in range(checkpoint.initial_epoch, epochs):
        rng = np.random.default_rng([args.seed, epoch])
        fixation_weight = 0.0 if epoch < warmup else 1.0
        if agent.fixation_weight != fixation_weight:
            agent.fixation_weight = fixation_weight  # a Python float: retrace the step
            agent.train_function = None
        train = _scenes(args, x_train, y_train, args.train_scenes, int(rng.integers(2**31)))
        # no fit(shuffle=True): it draws from the process's global RNG, which a
        # resumed run has used differently; the scenes are drawn in random order
        logs = agent.fit((train["scenes"], train["targets"]), train["target_boxes"],
                         batch_size=args.batch_size, epochs=epoch + 1,
                         initial_epoch=epoch, shuffle=False, verbose=0).history
        if (epoch + 1) % args.log_every == 0 or epoch + 1 == epochs:
            figures = agent.search(test["scenes"], test["targets"], test["target_boxes"])
            row = {"epoch": epoch + 1, "loss": float(logs["loss"][-1]),
                   "train_reward": float(logs["reward"][-1]),
                   "train_success": float(logs["success"][-1]),
                   "test_success": figures["success_within_k"],
                   "test_mean_fixations_present": figures["mean_fixations_present"],
                   "test_false_found_rate": figures["false_found_rate"],
                   "seconds": checkpoint.train_seconds()}
            history.append(row)
            if verbose:
                print(f"visual-search epoch {epoch + 1}: loss {row['loss']:.3f}, train "
                      f"reward {row['train_reward']:.3f}, test success "
                      f"{100 * row['test_success']:.1f}%, fixations (present) "
                      f"{row['test_mean_fixations_present']:.2f}, false found "
                      f"{100 * row['test_false_found_rate']:.1f}% "
                      f"({row['seconds']:.0f} s)", flush=True)
        checkpoint.save(epoch, {k: v[-1] for k, v in logs.items()}, extra={"rows": history})
    train_seconds = checkpoint.train_seconds()  # earlier runs' epochs included
    rows, paths = search_rows(agent, test, args.seed)
    k = args.fixations
    table = format_table(rows, k)
    with open(os.path.join(args.output_dir, "table.md"), "w") as f:
        f.write(table + "\n")
    agent.save(os.path.join(args.output_dir, "visual_search_agent.keras"))
    picture = _picture(agent, test, paths, os.path.join(args.output_dir, "search_paths.png"))
    figures = {"backend": keras.backend.backend(), "epochs": epochs, "K_fixations": k,
               "train_seconds": round(train_seconds, 1), **row_figures(rows)}
    figures["search_paths_png"] = picture
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump({"figures": figures, "rows": rows, "history": history,
                   "test_scenes": args.test_scenes, "train_scenes": args.train_scenes,
                   "args": vars(args)}, f, indent=2, default=str)
    if verbose:
        print(table)
    return figures


def search_rows(agent, test, seed):
    """Greedy searches of the agent and of the baselines: `(rows, paths)`."""
    rows, paths = {}, {}
    for name, strategy in ROWS:
        out = agent.search(test["scenes"], test["targets"], test["target_boxes"],
                           strategy=strategy, seed=seed, return_paths=True)
        paths[name] = (out.pop("locations"), out.pop("found"))
        out.pop("hits")
        rows[name] = out
    return rows, paths


def row_figures(rows):
    """The flat figures of `search_rows` (rates as fractions: kav shows percent)."""
    figures = {}
    for name, row in rows.items():
        figures[f"{name}_success_within_k"] = round(row["success_within_k"], 4)
        figures[f"{name}_mean_fixations_to_find"] = round(row["mean_fixations_to_find"], 2)
        figures[f"{name}_mean_fixations_present"] = round(row["mean_fixations_present"], 2)
        figures[f"{name}_false_found_rate"] = round(row["false_found_rate"], 4)
    return figures


def _picture(agent, test, paths, path):
    from keras_attention_vision.visualization.search_paths import plot_search_paths

    k = agent.num_fixations
    return plot_search_paths(
        test["scenes"], test["targets"], test["target_boxes"], paths, path,
        fovea_size=agent.sensor.patch_size,
        title=f"Fixation paths on test scenes (K={k}; green dashed: target box)")


def _load(args):
    """The agent of `--weights` (a preset or a weights file), its test scenes, record."""
    from keras_attention_vision.applications import VisualSearchAgent
    from keras_attention_vision.datasets import load_mnist
    from keras_attention_vision.recipes import _weights

    def build():
        return VisualSearchAgent(num_fixations=args.fixations, core_units=args.core_units,
                                 data_format="channels_last", seed=args.seed)

    agent, info = _weights.load(args, "VisualSearchAgent", PRESET, build)
    _weights.recipe_args(args, info, ("seed", "test_scenes", "absent_fraction"))
    _configure(args.seed)
    _, (x_test, y_test) = load_mnist("embedded", verbose=False)
    test = _scenes(args, x_test, y_test, args.test_scenes, 10_000 + args.seed)
    return agent, test, info


def evaluate(args):
    """Success within K, fixations and false "found" rate of trained weights (and the
    random and raster baselines with the same fovea) on the recipe's test scenes."""
    from keras_attention_vision.recipes import _weights

    agent, test, info = _load(args)
    rows, _ = search_rows(agent, test, args.seed)
    print(format_table(rows, agent.num_fixations))
    figures = {"weights": args.weights or PRESET, **row_figures(rows)}
    return _weights.compare(figures, info, "agent_success_within_k")


def visualize(args):
    """The fixation paths of trained weights and of the baselines on test scenes."""
    agent, test, _ = _load(args)
    os.makedirs(args.output_dir, exist_ok=True)
    _, paths = search_rows(agent, test, args.seed)
    picture = _picture(agent, test, paths, os.path.join(args.output_dir,
                                                        "search_paths.png"))
    print(f"visual-search: fixation paths written to {picture}")
    return {"search_paths_png": picture}


def train(args):
    return run(args, args.epochs)


def demo(args):
    """About a minute: 4 epochs of 1,000 scenes, evaluated on 200 (far from trained)."""
    args.train_scenes, args.test_scenes, args.log_every = 1000, 200, 2
    return run(args, 4)
