"""Argument checks shared by the layers; every error quotes what it received."""

import keras

DATA_FORMATS = ("channels_last", "channels_first")


def standardize_data_format(data_format):
    """Returns `data_format`, or `keras.config.image_data_format()` for `None`."""
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            f"`data_format` must be one of {DATA_FORMATS} or None. "
            f"Received: data_format={data_format!r}"
        )
    return data_format


def check_positive_int(name, value, allow_none=False):
    """Raises a `ValueError` quoting `value` unless it is an int >= 1."""
    if value is None and allow_none:
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    return value


def check_odd_positive_int(name, value):
    """Raises a `ValueError` quoting `value` unless it is an odd int >= 1."""
    check_positive_int(name, value)
    if value % 2 == 0:
        raise ValueError(f"`{name}` must be odd. Received: {name}={value}")
    return value


def check_bool(name, value):
    """Raises a `ValueError` quoting `value` unless it is `True` or `False`."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def check_number(name, value, minimum=None):
    """Raises a `ValueError` quoting `value` unless it is a real number >= `minimum`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ValueError(f"`{name}` must be a number. Received: {name}={value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value!r}")
    return float(value)


def check_choice(name, value, choices):
    """Raises a `ValueError` quoting `value` unless it is one of `choices`."""
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {tuple(choices)}. Received: {name}={value!r}"
        )
    return value


def check_rank(layer, input_shape, ranks):
    """Raises a `ValueError` naming the layer unless the input rank is allowed."""
    if len(input_shape) not in ranks:
        raise ValueError(
            f"{type(layer).__name__} expects an input of rank "
            f"{' or '.join(map(str, ranks))} (batch included). "
            f"Received: input_shape={tuple(input_shape)}"
        )


def check_nonempty_sizes(layer, input_shape):
    """Raises a `ValueError` naming the layer if a known non-batch size is 0.

    (An empty batch is fine; an empty image or no channels is not.)
    """
    if any(size == 0 for size in tuple(input_shape)[1:]):
        raise ValueError(
            f"{type(layer).__name__} needs spatial sizes and a channel count of at "
            f"least 1. Received: input_shape={tuple(input_shape)}"
        )


def check_int_tuple(name, value, length, minimum=1):
    """Raises a `ValueError` quoting `value` unless it holds `length` ints >= `minimum`.

    Returns the value as a tuple (lists from a config come back as tuples).
    """
    if (not isinstance(value, (tuple, list)) or len(value) != length
            or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum
                   for v in value)):
        raise ValueError(
            f"`{name}` must be a tuple of {length} ints >= {minimum}. "
            f"Received: {name}={value!r}"
        )
    return tuple(value)


def check_non_negative_int(name, value):
    """Raises a `ValueError` quoting `value` unless it is an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"`{name}` must be an int >= 0. Received: {name}={value!r}")
    return value
