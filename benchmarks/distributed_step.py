"""Train-step time of the RAM `mnist` preset on 1 and on 2 simulated devices.

The devices are simulated on the CPU: TensorFlow splits it into 2 logical
devices (`tf.distribute.MirroredStrategy`), JAX gets
`XLA_FLAGS=--xla_force_host_platform_device_count=2` (`keras.distribution.DataParallel`).
Both "devices" share the same cores, so on a CPU this measures the *overhead*
of the engine (splitting the batch, the all-reduce of the gradients, the
synchronised baseline), not a speed-up: expect a ratio of 1 or more. On real
GPUs or TPUs the same script shows the scaling.

Printed: the median seconds of one `train_on_batch` step (global batch
`--batch`) with the model on one device and with the engine over 2 devices,
timed in alternating rounds (`_timing.paired_ratio`), and their ratio.

Run: `KERAS_BACKEND=tensorflow python benchmarks/distributed_step.py` (or jax).
"""

import argparse
import os
import sys

REPLICAS = 2


def _configure_devices():
    """Simulated devices: before TensorFlow or JAX initialise."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "jax":
        flag = f"--xla_force_host_platform_device_count={REPLICAS}"
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * REPLICAS)
    else:
        sys.exit(f"tf.distribute and keras.distribution do not drive the {backend!r} "
                 "backend: run with KERAS_BACKEND=tensorflow or jax.")
    return backend


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="global batch size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per side and round")
    args = parser.parse_args()
    backend = _configure_devices()

    import keras
    import numpy as np

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _timing

    from keras_attention_vision.applications import RecurrentAttentionModel
    from keras_attention_vision.distribution import pick_engine

    rng = np.random.default_rng(0)
    x = rng.uniform(size=(args.batch, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, args.batch)

    def build():
        keras.utils.set_random_seed(0)
        model = RecurrentAttentionModel.from_preset("mnist", seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.01))
        return model

    one = build()
    engine = pick_engine()
    with engine.scope():
        many = build()
    print(f"backend {backend}; engine: {engine.describe()}")
    print(f"RAM mnist preset, global batch {args.batch}, one train_on_batch step")

    def step_many():  # JAX shards the batch by the distribution active at the call
        with engine.scope():
            many.train_on_batch(x, y)

    result = _timing.paired_ratio(step_many, lambda: one.train_on_batch(x, y),
                                  rounds=args.rounds, steps=args.steps)
    print(f"  1 device:            {result['b'] * 1e3:8.1f} ms/step")
    print(f"  {engine.num_replicas} simulated devices: {result['a'] * 1e3:8.1f} ms/step")
    print(f"  ratio {engine.num_replicas} devices / 1 device: {_timing.describe(result)}")
    print("  (simulated devices share one CPU: this is the engine's overhead, not a "
          "speed-up)")


if __name__ == "__main__":
    main()
