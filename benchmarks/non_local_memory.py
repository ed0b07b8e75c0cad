"""Peak memory of a NonLocalBlock with and without query chunking.

The claim: on 128x128x64 maps (N = 16,384 positions, no sub-sampling), an
embedded-Gaussian block with `query_chunk_size` needs at most 1/4 of the peak
memory of the unchunked block, whose 16,384 x 16,384 affinity matrix alone is
1 GiB in float32. (On PyTorch the embedded-Gaussian block goes through the
fused SDPA kernel, which never builds that matrix, and does not chunk; use
`--mode dot_product` there to see the chunking.)

Each configuration runs in a fresh subprocess: the model is built and run on a
tiny 8x8 input first (so imports, kernels and weights are in memory), then
`ru_maxrss` is read, the 128x128 pass runs, and `ru_maxrss` is read again;
the difference is the peak the pass added (host memory: this is the CPU
figure; on a GPU use the backend's memory statistics instead). Both
inference (`predict_on_batch`) and a training step (`train_on_batch`,
forward + backward, where the chunked block recomputes each chunk) are
measured, and the ratios chunked / unchunked printed, in one run.

Usage: `KERAS_BACKEND=tensorflow python benchmarks/non_local_memory.py`
"""

import argparse
import json
import os
import subprocess
import sys


def _child(chunk, phase, size, channels, batch, mode):
    import resource

    import keras
    import numpy as np

    from keras_attention_vision.layers import NonLocalBlock

    def model_for(s):
        inputs = keras.Input((s, s, channels))
        block = NonLocalBlock(mode=mode, query_chunk_size=chunk)
        model = keras.Model(inputs, block(inputs))
        model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="mse")
        return model

    rng = np.random.default_rng(0)
    small = rng.normal(size=(batch, 8, 8, channels)).astype("float32")
    model_for(8).train_on_batch(small, small)
    model = model_for(size)
    x = rng.normal(size=(batch, size, size, channels)).astype("float32")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if phase == "inference":
        model.predict_on_batch(x)
    else:
        model.train_on_batch(x, x)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mib": (after - before) / 1024.0}))


def _measure(chunk, phase, args):
    cmd = [sys.executable, __file__, "--child", "--chunk", str(chunk), "--phase", phase,
           "--size", str(args.size), "--channels", str(args.channels),
           "--batch", str(args.batch), "--mode", args.mode]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--mode", default="embedded_gaussian",
                        help="NonLocalBlock mode (default: embedded_gaussian)")
    parser.add_argument("--phases", nargs="+", default=["inference", "training"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--phase", default="inference", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.chunk or None, args.phase, args.size, args.channels, args.batch,
               args.mode)
        return None
    import keras

    print(f"backend={keras.backend.backend()} input=({args.batch}, {args.size}, "
          f"{args.size}, {args.channels}) mode={args.mode} "
          f"query_chunk_size={args.chunk_size}")
    ratios = {}
    for phase in args.phases:
        full = _measure(0, phase, args)
        chunked = _measure(args.chunk_size, phase, args)
        ratios[phase] = chunked / full
        print(f"{phase:>9}: unchunked peak +{full:8.1f} MiB, chunked +{chunked:8.1f} MiB, "
              f"ratio {chunked / full:.3f} ({'<= 1/4' if chunked <= full / 4 else '> 1/4'})")
    return ratios


if __name__ == "__main__":
    main()
