"""Runs the test suite once per Keras backend (TensorFlow, JAX, PyTorch).

The backend is fixed when keras is first imported, so each backend gets its own
pytest process. Prints each backend's pytest summary line, then one line per
backend; exits non-zero if any backend failed or ran no test.

Usage: python scripts/run_tests.py [--backends tensorflow jax torch] [pytest args]
"""

import argparse
import os
import subprocess
import sys
import time

BACKENDS = ("tensorflow", "jax", "torch")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=BACKENDS)
    args, pytest_args = parser.parse_known_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results = {}
    for backend in args.backends:
        print(f"\n===== KERAS_BACKEND={backend} =====", flush=True)
        env = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="3",
                   MPLBACKEND="Agg")
        start = time.perf_counter()
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-rs", *pytest_args], cwd=root,
            env=env,
        )
        results[backend] = (code, time.perf_counter() - start)
    print("\n===== summary =====")
    for backend, (code, seconds) in results.items():
        state = {0: "passed", 5: "ran no test"}.get(code, f"failed (exit {code})")
        print(f"{backend:>10}: {state} in {seconds:.0f} s")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
