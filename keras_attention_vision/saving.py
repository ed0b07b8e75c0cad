"""What `.keras` files keep beyond Keras's own variables: random-generator state.

Keras saves a layer's trainable and non-trainable variables, but not the state
of the `keras.random.SeedGenerator`s it owns, so after `load_model` a model
draws the random numbers of a fresh generator and resumed training differs
from uninterrupted training. `SeedStateMixin` stores that state too.
"""

SEED_KEY = "seed_generator_{}"


class SeedStateMixin:
    """Saves and restores the state of the layer's own `SeedGenerator`s.

    Mix in before `keras.layers.Layer` / `keras.Model`. The states are stored
    under `seed_generator_0, seed_generator_1, ...` beside Keras's numbered
    variables, in the order the generators were assigned. Files written
    without them (older versions) still load; the generators then keep their
    current state.

    Example:

    ```python
    class Noisy(SeedStateMixin, keras.layers.Layer):
        def __init__(self, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.seed_generator = keras.random.SeedGenerator(seed)
    ```
    """

    def save_own_variables(self, store):
        super().save_own_variables(store)
        for i, generator in enumerate(self._seed_generators):
            store[SEED_KEY.format(i)] = generator.state

    def load_own_variables(self, store):
        seed_keys = {SEED_KEY.format(i): generator
                     for i, generator in enumerate(self._seed_generators)}
        own = {key: store[key] for key in store.keys() if key not in seed_keys}
        super().load_own_variables(own)
        for key, generator in seed_keys.items():
            if key in store.keys():
                generator.state.assign(store[key])
