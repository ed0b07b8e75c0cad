"""The shapes-captions generator and the Flickr8k / COCO caption loaders."""

import json
import os

import numpy as np
import pytest

from keras_attention_vision.datasets import (
    caption_pairs,
    load_caption_images,
    load_coco_captions,
    load_flickr8k_captions,
    make_shapes_captions,
)
from keras_attention_vision.datasets.shapes_captions import COLOURS


def test_seeded_images_captions_and_boxes():
    data = make_shapes_captions(40, seed=3)
    again = make_shapes_captions(40, seed=3)
    np.testing.assert_array_equal(data["images"], again["images"])
    assert data["captions"] == again["captions"]
    assert not np.array_equal(data["images"], make_shapes_captions(40, seed=4)["images"])
    assert data["images"].shape == (40, 32, 32, 3) and data["images"].dtype == np.float32
    assert 0 <= data["images"].min() and data["images"].max() <= 1
    counts = set()
    for image, refs, objects in zip(data["images"], data["captions"], data["objects"]):
        counts.add(len(objects))
        assert len(refs) == 4 and len(set(refs)) == 4
        xs = [o["box"][1] for o in objects]
        assert xs == sorted(xs)  # left to right
        phrases = [f"a {o['colour']} {o['shape']}" for o in objects]
        assert refs[0] == " left of ".join(phrases)
        if len(objects) > 1:
            assert refs[1] == " right of ".join(reversed(phrases))
        for o in objects:
            y0, x0, y1, x1 = o["box"]
            assert all(isinstance(v, int) for v in o["box"])
            assert 0 <= y0 < y1 <= 32 and 0 <= x0 < x1 <= 32
            # The box's centre pixel has the shape's colour (every shape covers it).
            centre = image[(y0 + y1) // 2, (x0 + x1) // 2]
            assert np.abs(centre - np.asarray(COLOURS[o["colour"]])).max() < 0.15
    assert counts == {1, 2, 3}


def test_caption_pairs():
    indices, texts = caption_pairs([["a", "b"], ["c"]])
    assert indices.tolist() == [0, 0, 1] and texts == ["a", "b", "c"]
    indices, texts = caption_pairs({"x.jpg": ["a"], "y.jpg": ["b", "c"]})
    assert indices.tolist() == [0, 1, 1]


@pytest.mark.parametrize("kwargs,match", [
    ({"num_images": 0}, "num_images=0"),
    ({"num_images": 2, "max_shapes": 4}, "max_shapes=4"),
    ({"num_images": 2, "num_references": 5}, "num_references=5"),
    ({"num_images": 2, "shape_size": (4, 20)}, r"shape_size=\(4, 20\)"),
])
def test_bad_arguments_quote_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes_captions(**kwargs)


def test_flickr8k_token_file(tmp_path):
    path = tmp_path / "Flickr8k.token.txt"
    path.write_text("1000.jpg#1\tA dog runs .\n1000.jpg#0\tA black dog is running .\n"
                    "\n2000.jpg#0\tTwo children play .\n")
    captions = load_flickr8k_captions(str(path))
    assert captions == {"1000.jpg": ["A black dog is running .", "A dog runs ."],
                        "2000.jpg": ["Two children play ."]}
    path.write_text("1000.jpg#0\tfine\n1000.jpg no tab\n")
    with pytest.raises(ValueError, match=r":2: .*line='1000.jpg no tab'"):
        load_flickr8k_captions(str(path))


def test_coco_captions_file(tmp_path):
    path = tmp_path / "captions_train2014.json"
    path.write_text(json.dumps({
        "images": [{"id": 9, "file_name": "COCO_9.jpg"}, {"id": 3, "file_name": "COCO_3.jpg"}],
        "annotations": [{"image_id": 3, "id": 1, "caption": "A cat. "},
                        {"image_id": 9, "id": 2, "caption": "A bus"},
                        {"image_id": 3, "id": 3, "caption": "A cat sleeps"}],
    }))
    assert load_coco_captions(str(path)) == {"COCO_9.jpg": ["A bus"],
                                             "COCO_3.jpg": ["A cat.", "A cat sleeps"]}
    path.write_text(json.dumps({"images": [], "annotations": [{"image_id": 5,
                                                               "caption": "x"}]}))
    with pytest.raises(ValueError, match="image_id=5"):
        load_coco_captions(str(path))
    path.write_text(json.dumps({"info": {}}))
    with pytest.raises(ValueError, match=r"keys=\['info'\]"):
        load_coco_captions(str(path))


def test_load_caption_images(tmp_path):
    import keras

    image = np.zeros((10, 20, 3), "uint8")
    image[:, :10, 0] = 255
    keras.utils.save_img(os.path.join(tmp_path, "a.png"), image)
    loaded = load_caption_images(str(tmp_path), ["a.png"], (5, 8))
    assert loaded.shape == (1, 5, 8, 3) and loaded.max() <= 1.0
    assert loaded[0, :, 0, 0].min() > 0.9 and loaded[0, :, -1, 0].max() < 0.1
    with pytest.raises(FileNotFoundError, match="name='b.png'"):
        load_caption_images(str(tmp_path), ["b.png"], (5, 8))
