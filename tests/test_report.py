"""`kav demo`'s report: every number with its unit, every picture of index.html on disk."""

import html.parser
import os

import pytest

from keras_attention_vision import report


class _Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.sections, self.rows = [], [], [], 0
        self._in_front = False
        self._tables = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "a":
            self.links.append(attrs["href"])
        elif tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "table":
            self._tables += 1
        elif tag == "tr" and self._tables == 1:
            self.rows += 1


def _fake_results(root):
    results = {}
    for name, figures in {
        "ram": {"test_error_m1": 12.5, "test_error_m10": 11.0, "train_seconds": 61.2,
                "glimpse_png": "x.png", "preset": "mnist"},
        "pixelcnn": {"test_bits_per_dim": 0.2013, "test_nll_nats": 109.4,
                     "completions_keep_given_half": True},
        "non-local": {"accuracy_baseline": 0.871, "accuracy_nonlocal": 0.89},
    }.items():
        folder = root / name
        (folder / "sub").mkdir(parents=True)
        (folder / "samples.png").write_bytes(b"\x89PNG fake")
        (folder / "sub" / "maps.png").write_bytes(b"\x89PNG fake")
        (folder / "results.json").write_text("{}")
        results[name] = {"figures": figures, "seconds": 3.0, "output_dir": str(folder),
                         "help": f"the {name} recipe"}
    return results


def test_index_html_references_existing_pictures_only(tmp_path):
    path = report.write_report(str(tmp_path), _fake_results(tmp_path), total_seconds=90)
    assert path == os.path.join(str(tmp_path), "index.html")
    page = _Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    assert page.sections == ["ram", "pixelcnn", "non-local"]
    assert page.rows == 1 + 3  # front table: header and one row per application
    assert len(page.images) == 6
    for image in page.images:
        assert image["alt"]
        assert os.path.isfile(os.path.join(str(tmp_path), image["src"])), image["src"]
    for link in page.links:
        target = link.split("#")[0]
        assert not target or os.path.isfile(os.path.join(str(tmp_path), target)), link


@pytest.mark.parametrize("key, value, text", [
    ("test_error_m1", 12.5, "12.50%"),            # RAM: percent already
    ("accuracy_nonlocal", 0.871, "87.1%"),        # fractions: shown in percent
    ("vgg_test_error", 0.25, "25.0%"),
    ("soft_bleu4", 0.74, "74.0%"),
    ("test_bits_per_dim", 1.26821, "1.268 bits/dim"),
    ("test_nll_nats", 109.4, "109.4 nats"),
    ("train_seconds", 61.2, "61 s"),
    ("sample_seconds", 2.345, "2.3 s"),
    ("completions_keep_given_half", True, "yes"),
    ("final_loss", 1.7, "1.7 (hinge loss, mean per example)"),
    ("epochs", 20, "20 epochs"),
    ("agent_success_within_k", 0.255, "25.5%"),
    ("agent_mean_fixations_present", 4.5, "4.5 fixations"),
])
def test_numbers_carry_units(key, value, text):
    assert report.format_value(key, value) == text


def test_summary_does_not_repeat_a_key_that_is_its_unit():
    texts = report.figure_texts({"epochs": 20, "parameters": 33728, "test_error": 0.25})
    assert texts == ["20 epochs", "33,728 parameters", "test_error 25.0%"]


def test_recipe_units_override_the_rules():
    assert report.format_value("found", 0.5, {"found": "%"}) == "0.50%"
    assert report.format_value("mean_steps", 4.25, {"mean_steps": "fixations"}) == \
        "4.25 fixations"
    shown = dict(report.format_figures({"glimpse_png": "a.png", "x_seconds": 1.0}))
    assert shown == {"x_seconds": "1.0 s"}
