"""Captioned images: a seeded shapes-captions set, and Flickr8k / COCO caption files.

`make_shapes_captions` draws 1-3 coloured shapes (circle, square, triangle) on a
textured background and describes them with several reference captions, e.g.
"a red circle left of a blue square" and "a blue square right of a red circle".
It returns each shape's box, so the attention of a captioner can be scored
against the shape it names (`metrics.attention_correctness`). Boxes are
`(y_min, x_min, y_max, x_max)` in pixels, max exclusive, as in
`make_cluttered_mnist`.

`load_flickr8k_captions` and `load_coco_captions` read the caption files of the
real data sets from local files; `load_caption_images` reads the images.
"""

import json
import os

import numpy as np

COLOURS = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.10, 0.72, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.85, 0.10),
}
SHAPES = ("circle", "square", "triangle")


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}")
    return int(value)


def _background(rng, size):
    """Grey stripes of random orientation and frequency, plus pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    angle = rng.uniform(0, np.pi)
    frequency = rng.uniform(0.3, 0.9)
    stripes = np.sin(frequency * (np.cos(angle) * xx + np.sin(angle) * yy)
                     + rng.uniform(0, 2 * np.pi))
    grey = rng.uniform(0.35, 0.6) + 0.08 * stripes + rng.normal(0, 0.03, (size, size))
    return np.repeat(grey[..., None], 3, axis=-1)


def _shape_mask(shape, size):
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") + 0.5
    if shape == "square":
        return np.ones((size, size), bool)
    if shape == "circle":
        r = size / 2
        return (yy - r) ** 2 + (xx - r) ** 2 <= r * r
    # An upward triangle: the apex at the top centre, the base on the last row.
    return np.abs(xx - size / 2) <= yy / 2


def _phrase(obj):
    return f"a {obj['colour']} {obj['shape']}"


def _references(objects):
    """Reference captions of shapes ordered left to right; the first is canonical."""
    p = [_phrase(o) for o in objects]
    if len(p) == 1:
        return [p[0], f"there is {p[0]}", f"{p[0]} in the picture", f"one {p[0][2:]}"]
    left = " left of ".join(p)
    right = " right of ".join(reversed(p))
    return [left, right, " and ".join(p), f"there is {left}"]


def make_shapes_captions(num_images, image_size=32, min_shapes=1, max_shapes=3,
                         shape_size=(8, 10), num_references=4, seed=0):
    """Images of coloured shapes with reference captions and each shape's box.

    The image is cut into `max_shapes` columns; each shape takes its own
    column (so "left of" is always well defined), at a random height, with a
    random size in `shape_size`. Shapes of one image differ in colour or kind.
    The references name the shapes left to right ("a red circle left of a blue
    square"), right to left ("... right of ..."), with "and", and with "there
    is"; the first is the canonical one.

    Args:
        num_images: number of images.
        image_size: side of the square RGB images (pixels).
        min_shapes, max_shapes: shapes per image (1 to 3 by default).
        shape_size: `(min, max)` side of a shape in pixels, inclusive.
        num_references: captions per image, 1 to 4.
        seed: the same seed gives the same data.

    Returns:
        A dict: `images` float32 `(N, S, S, 3)` in `[0, 1]`; `captions`, a
        list of `N` lists of reference strings; `objects`, a list of `N` lists
        of `{"colour", "shape", "box"}` dicts ordered left to right, with
        `box = (y_min, x_min, y_max, x_max)` (pixels, max exclusive).

    Example:

    ```python
    data = make_shapes_captions(1000, seed=0)
    data["captions"][0]   # ['a red circle left of a blue square', ...]
    ```
    """
    num_images = _check_int("num_images", num_images, 1)
    image_size = _check_int("image_size", image_size, 8)
    min_shapes = _check_int("min_shapes", min_shapes, 1)
    max_shapes = _check_int("max_shapes", max_shapes, 1)
    num_references = _check_int("num_references", num_references, 1)
    if min_shapes > max_shapes or max_shapes > 3:
        raise ValueError("Need 1 <= min_shapes <= max_shapes <= 3. Received: "
                         f"min_shapes={min_shapes}, max_shapes={max_shapes}")
    if num_references > 4:
        raise ValueError(f"`num_references` must be <= 4. Received: "
                         f"num_references={num_references}")
    column = image_size // max_shapes
    if (not isinstance(shape_size, (tuple, list)) or len(shape_size) != 2
            or not 2 <= shape_size[0] <= shape_size[1] <= column):
        raise ValueError(
            f"`shape_size` must be (min, max) with 2 <= min <= max <= {column} "
            f"(image_size // max_shapes). Received: shape_size={shape_size!r}"
        )
    rng = np.random.default_rng(seed)
    colour_names = list(COLOURS)
    images = np.empty((num_images, image_size, image_size, 3), "float32")
    captions, objects = [], []
    for n in range(num_images):
        image = _background(rng, image_size)
        count = int(rng.integers(min_shapes, max_shapes + 1))
        columns = np.sort(rng.choice(max_shapes, count, replace=False))
        kinds = rng.choice(len(colour_names) * len(SHAPES), count, replace=False)
        found = []
        for col, kind in zip(columns, kinds):
            colour, shape = colour_names[kind // len(SHAPES)], SHAPES[kind % len(SHAPES)]
            size = int(rng.integers(shape_size[0], shape_size[1] + 1))
            x0 = int(col) * column + int(rng.integers(0, column - size + 1))
            y0 = int(rng.integers(0, image_size - size + 1))
            mask = _shape_mask(shape, size)
            fill = np.asarray(COLOURS[colour]) + rng.normal(0, 0.03, (size, size, 3))
            region = image[y0:y0 + size, x0:x0 + size]
            region[mask] = fill[mask]
            found.append({"colour": colour, "shape": shape,
                          "box": (y0, x0, y0 + size, x0 + size)})
        images[n] = np.clip(image, 0.0, 1.0)
        objects.append(found)
        captions.append(_references(found)[:num_references])
    return {"images": images, "captions": captions, "objects": objects}


def caption_pairs(captions):
    """Flattens reference lists into `(image_index, caption)` training pairs.

    Args:
        captions: a list of lists of captions (one list per image), or a dict
            `{image_name: [captions]}` as the loaders return.

    Returns:
        `(indices, texts)`: an int array of image indices (into the list, or
        into `list(captions)` for a dict) and the list of captions.
    """
    if isinstance(captions, dict):
        captions = list(captions.values())
    indices, texts = [], []
    for i, refs in enumerate(captions):
        for text in refs:
            indices.append(i)
            texts.append(text)
    return np.asarray(indices, "int64"), texts


def load_flickr8k_captions(path):
    """Reads Flickr8k's `Flickr8k.token.txt`: `image.jpg#k<TAB>caption` lines.

    Args:
        path: the token file.

    Returns:
        `{image_name: [captions in the order of k]}`, images in file order.

    Example:

    ```python
    captions = load_flickr8k_captions("Flickr8k_text/Flickr8k.token.txt")
    images = load_caption_images("Flicker8k_Dataset", list(captions), (224, 224))
    ```
    """
    entries = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n\r")
            if not line.strip():
                continue
            key, sep, caption = line.partition("\t")
            name, hash_sign, index = key.partition("#")
            if not sep or not hash_sign or not index.isdigit() or not name:
                raise ValueError(
                    f"{path}:{number}: expected 'image.jpg#k<TAB>caption'. "
                    f"Received: line={line!r}"
                )
            entries.setdefault(name, []).append((int(index), caption.strip()))
    return {name: [c for _, c in sorted(caps)] for name, caps in entries.items()}


def load_coco_captions(path):
    """Reads a COCO captions file (`captions_train2014.json` and its siblings).

    Args:
        path: the JSON file with `images` (`id`, `file_name`) and
            `annotations` (`image_id`, `caption`).

    Returns:
        `{file_name: [captions]}`, images in the file's order, captions in
        annotation order.
    """
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: a COCO captions file has 'images' and 'annotations'. "
                         f"Received: keys={keys}")
    names = {image["id"]: image["file_name"] for image in data["images"]}
    captions = {name: [] for name in names.values()}
    for annotation in data["annotations"]:
        image_id = annotation.get("image_id")
        if image_id not in names:
            raise ValueError(f"{path}: an annotation refers to an unknown image. "
                             f"Received: image_id={image_id!r}")
        captions[names[image_id]].append(annotation["caption"].strip())
    return captions


def load_caption_images(directory, names, image_size):
    """Loads images as float32 `(N, H, W, 3)` in `[0, 1]`, resized to `image_size`.

    Args:
        directory: the folder of the images.
        names: file names inside it (e.g. `list(load_flickr8k_captions(...))`).
        image_size: `(H, W)`.
    """
    import keras

    arrays = []
    for name in names:
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"No image file at {path!r}. Received: name={name!r}")
        image = keras.utils.load_img(path, color_mode="rgb", target_size=tuple(image_size))
        arrays.append(keras.utils.img_to_array(image, dtype="float32") / 255.0)
    return np.stack(arrays) if arrays else np.zeros((0, *image_size, 3), "float32")
