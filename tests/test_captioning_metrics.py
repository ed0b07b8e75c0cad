"""BLEU through nltk and the attention correctness of captions."""

import numpy as np
import pytest

from keras_attention_vision.metrics import attention_correctness, bleu_scores


def test_bleu_matches_hand_computed_values():
    assert bleu_scores([["a red circle left of a blue square"]],
                       ["a red circle left of a blue square"]) == {
        "bleu1": 1.0, "bleu2": 1.0, "bleu3": 1.0, "bleu4": 1.0}
    # 4 words, references of 4 words: unigram precision 3/4, bigrams 1/3.
    scores = bleu_scores([["a red big circle"]], ["a red small circle"], max_order=2)
    assert scores["bleu1"] == pytest.approx(0.75)
    assert scores["bleu2"] == pytest.approx(np.sqrt(0.75 * 1 / 3))
    # The closest reference length sets the brevity penalty: exp(1 - 4/3).
    scores = bleu_scores([["a b c d", "x y z w v u"]], ["a b c"], max_order=1)
    assert scores["bleu1"] == pytest.approx(np.exp(1 - 4 / 3))


def test_bleu_bad_input():
    with pytest.raises(ValueError, match="max_order=5"):
        bleu_scores([["a"]], ["a"], max_order=5)
    with pytest.raises(ValueError, match="1 references, 2 hypotheses"):
        bleu_scores([["a"]], ["a", "b"])
    with pytest.raises(ValueError, match="references\\[0\\]='a b'"):
        bleu_scores(["a b"], ["a"])


def test_attention_correctness_on_named_shapes():
    objects = [{"colour": "red", "shape": "circle", "box": (0, 0, 4, 4)},
               {"colour": "blue", "shape": "square", "box": (4, 4, 8, 8)}]
    words = "a red circle left of a blue square".split()
    maps = np.full((len(words), 2, 2), 0.0)
    maps[2] = [[0.7, 0.1], [0.1, 0.1]]   # "circle": on the red circle's cell
    maps[7] = [[0.6, 0.0], [0.0, 0.4]]   # "square": maximum off the square
    out = attention_correctness([maps], [" ".join(words)], [objects], image_shape=(8, 8))
    assert out["words"] == 2
    assert out["correctness"] == pytest.approx(0.5)
    assert out["mass"] == pytest.approx((0.7 + 0.4) / 2)
    # words="phrase" also scores "red" (step 1) and "blue" (step 6).
    maps[1] = [[0.1, 0.1], [0.1, 0.7]]   # "red": off the circle
    maps[6] = [[0.0, 0.2], [0.0, 0.8]]   # "blue": on the square
    out = attention_correctness([maps], [words], [objects], (8, 8), words="phrase",
                                reduction="none")
    np.testing.assert_allclose(out["correctness"], [0, 1, 1, 0])
    np.testing.assert_allclose(out["mass"], [0.1, 0.7, 0.8, 0.4])
    # "circle" after another colour names no object of the image: not scored.
    out = attention_correctness([maps], ["a blue circle"], [objects], (8, 8),
                                reduction="none")
    assert out["words"] == 0 and len(out["correctness"]) == 0
    out = attention_correctness([maps[:3]], ["a red circle"], [[("red circle", (0, 0, 4, 4))]],
                                (8, 8), reduction="none")
    np.testing.assert_allclose(out["mass"], [0.7])


def test_attention_correctness_bad_input():
    with pytest.raises(ValueError, match="words='all'"):
        attention_correctness([], [], [], (8, 8), words="all")
    with pytest.raises(ValueError, match="reduction='sum'"):
        attention_correctness([], [], [], (8, 8), reduction="sum")
    with pytest.raises(ValueError, match=r"shape=\(1, 2, 2\)"):
        attention_correctness([np.zeros((1, 2, 2))], ["a red circle"], [[]], (8, 8))
