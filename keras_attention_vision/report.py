"""The `kav demo` report: figures with their units, and `index.html` with the pictures.

`format_figures` writes each number a recipe returns with its unit (percent,
bits/dim, nats, seconds); `write_report` writes `OUTPUT_DIR/index.html`: a
front table (one row per application, its headline numbers and run time),
then one section per application with all its numbers and every picture it
wrote. Standard library only (no TensorFlow), so it is quick to test.

A recipe may define `UNITS = {figure key: unit}` for keys the rules of
`unit_of` do not cover. A unit `"fraction"` is shown as a percentage
(value x 100); `"%"` means the value is a percentage already.
"""

import datetime
import html
import os

#: Prefix of the figures `kav demo` measures on a recipe's shipped preset.
PRESET_PREFIX = "preset_"
#: Keys whose values are percentages already (the RAM recipe reports errors in %).
PERCENT_KEYS = ("test_error_m", "paper_error")
#: Key parts of rates reported as fractions in [0, 1]: shown in percent.
FRACTION_PARTS = ("error", "accuracy", "correctness", "pointing_game", "iou", "bleu",
                  "mass", "rate", "found", "success")
#: Units of keys the rules below do not cover.
KEY_UNITS = {
    "final_loss": "(hinge loss, mean per example)",
    "generator_attention_gamma": "(attention output weight gamma, no unit)",
    "sample_mean": "(mean pixel value, 0 to 1)",
    "real_mean": "(mean pixel value, 0 to 1)",
    "epochs": "epochs",
    "parameters": "parameters",
}


def unit_of(key, units=None):
    """The unit of figure `key`: a recipe's `UNITS` entry, else by the key's name.

    A `preset_` prefix (the demo's scores of a shipped preset) keeps the
    unit of the figure it prefixes.
    """
    if key.startswith(PRESET_PREFIX):
        key = key[len(PRESET_PREFIX):]
    if units and key in units:
        return units[key]
    if key in KEY_UNITS:
        return KEY_UNITS[key]
    if "seconds" in key:
        return "s"
    if "bits_per_dim" in key:
        return "bits/dim"
    if "nats" in key:
        return "nats"
    if key.startswith(PERCENT_KEYS):
        return "%"
    if any(part in key for part in FRACTION_PARTS):
        return "fraction"
    if "fixations" in key:
        return "fixations"
    if "steps" in key:
        return "steps"
    return ""


def format_value(key, value, units=None):
    """`value` as text with its unit, e.g. `12.5%`, `1.2682 bits/dim`, `31 s`."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, (int, float)):
        return str(value)
    unit = unit_of(key, units)
    if unit == "fraction":
        return f"{100 * value:.1f}%"
    if unit == "%":
        return f"{value:.2f}%"
    if unit == "s":
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    text = f"{value:.4g}" if isinstance(value, float) else f"{value:,}"
    return f"{text} {unit}".strip()


def format_figures(figures, units=None):
    """`[(key, text with unit), ...]` of a recipe's figures (file paths left out)."""
    return [(key, format_value(key, value, units)) for key, value in figures.items()
            if not (isinstance(value, str) and key.endswith(("_png", "_path", "_file")))]


def figure_texts(figures, units=None):
    """`["key text", ...]`: one recipe's figures as the summary line shows them.

    A key that is also its value's unit is not repeated: `20 epochs`, not
    `epochs 20 epochs`.
    """
    return [text if text.endswith(" " + key) else f"{key} {text}"
            for key, text in format_figures(figures, units)]


def _pictures(output_dir, folder):
    """PNG files under `folder`, as paths relative to `output_dir`, sorted."""
    found = []
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name.lower().endswith((".png", ".jpg", ".jpeg", ".svg")):
                found.append(os.path.relpath(os.path.join(root, name), output_dir))
    return sorted(found)


def _headline(figures, units, count=3):
    shown = [f"{k}: {v}" for k, v in format_figures(figures, units)
             if isinstance(figures[k], (int, float)) and not isinstance(figures[k], bool)
             and "seconds" not in k]
    return "; ".join(shown[:count])


STYLE = """
body { font-family: sans-serif; max-width: 72em; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; }
th { background: #eee; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 34em; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #555; }
"""


def write_report(output_dir, results, total_seconds=None, title="kav demo"):
    """Writes `output_dir/index.html`; returns its path.

    Args:
        output_dir: the folder of the run (`kav_output`).
        results: `{recipe name: {"figures": dict, "seconds": float,
            "output_dir": folder of its files, "help": one line,
            "units": optional dict}}`, in the order shown.
        total_seconds: wall time of the whole run, shown at the top.
        title: the page title.
    """
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{esc(title)}: results</h1>"]
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    backend = next((r["figures"].get("backend") for r in results.values()
                    if r["figures"].get("backend")), os.environ.get("KERAS_BACKEND"))
    line = f"Written {when}"
    if backend:
        line += f", Keras backend {backend}"
    if total_seconds is not None:
        line += f", {total_seconds / 60:.1f} min in all"
    parts.append(f"<p>{esc(line)}. Short runs on embedded data: the numbers show the "
                 "pipeline works, not the papers' results (see each application's "
                 "README for those).</p>")
    parts += ["<table><thead><tr><th>application</th><th>what it runs</th>"
              "<th>headline numbers</th><th>time</th></tr></thead><tbody>"]
    for name, result in results.items():
        parts.append(
            f"<tr><td><a href=\"#{esc(name)}\">{esc(name)}</a></td>"
            f"<td>{esc(result.get('help', ''))}</td>"
            f"<td>{esc(_headline(result['figures'], result.get('units')))}</td>"
            f"<td>{result.get('seconds', 0):.0f} s</td></tr>")
    parts.append("</tbody></table>")
    for name, result in results.items():
        units = result.get("units")
        parts += [f"<section id=\"{esc(name)}\"><h2>{esc(name)}</h2>",
                  f"<p>{esc(result.get('help', ''))}</p>",
                  "<table><thead><tr><th>figure</th><th>value</th></tr></thead><tbody>"]
        for key, text in format_figures(result["figures"], units):
            parts.append(f"<tr><td>{esc(key)}</td><td>{esc(text)}</td></tr>")
        parts.append("</tbody></table>")
        folder = result.get("output_dir") or os.path.join(output_dir, name)
        for picture in _pictures(output_dir, folder):
            src = picture.replace(os.sep, "/")
            caption = os.path.basename(picture)
            parts.append(f"<figure><img src=\"{esc(src)}\" alt=\"{esc(name)}: "
                         f"{esc(caption)}\"><figcaption>{esc(caption)}</figcaption></figure>")
        tables = sorted(name for name in os.listdir(folder)
                        if name.endswith((".md", ".json"))) if os.path.isdir(folder) else []
        for extra in tables:  # results.md, results.json, table.md, ...
            rel = os.path.relpath(os.path.join(folder, extra), output_dir)
            rel = rel.replace(os.sep, "/")
            parts.append(f"<p><a href=\"{esc(rel)}\">{esc(rel)}</a></p>")
        parts.append("</section>")
    parts.append("</body></html>")
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts) + "\n")
    return path
