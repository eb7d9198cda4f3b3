"""Report figures drawn with matplotlib's Agg backend, returned as PNG bytes.

Each function takes values straight from the typed results (or examples.npz) and draws them;
nothing is recomputed except what a picture needs (the difference image, a colour scale).
matplotlib is imported when the first figure is drawn: listing the report formats walks this
folder and must stay light.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from robustness.core.schema import (
        AuditResults,
        SectionCurve,
        SectionFigure,
        SectionHeatmap,
        SectionImages,
    )

DPI = 150


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)  # no display needed; harmless if the caller chose Agg already
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_matrix(confusion: list[list[int]]) -> bytes:
    """Heat map of the clean confusion matrix with counts written in the cells."""
    import numpy as np

    plt = _pyplot()
    cm = np.asarray(confusion, dtype=np.int64)
    c = cm.shape[0]
    size = min(6.0, 2.0 + 0.38 * c)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    if c <= 20:
        thresh = cm.max() / 2 if cm.size else 0
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7 if c > 10 else 8,
                        color="white" if cm[i, j] > thresh else "black",
                    )
        ax.set_xticks(range(c))
        ax.set_yticks(range(c))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Clean confusion matrix (counts)", fontsize=10)
    return _png(fig)


def robust_curve(results: AuditResults) -> bytes:
    """Robust accuracy vs eps: worst case with its 95% band, each attack (cumulative), gates."""
    import numpy as np

    plt = _pyplot()
    rows = results.robust
    clean = results.clean
    eps = np.array([0.0] + [float(r.eps) for r in rows])
    acc = np.array([clean.accuracy] + [r.accuracy for r in rows])
    lo = np.array([clean.ci[0]] + [r.ci[0] for r in rows])
    hi = np.array([clean.ci[1]] + [r.ci[1] for r in rows])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.fill_between(eps, lo, hi, color="#1f77b4", alpha=0.18, label="worst case, 95% CI")
    ax.plot(eps, acc, "o-", color="#1f77b4", lw=2.2, label="worst case over all attacks")
    attacks = [a.name for a in results.attacks or []] or list(rows[0].per_attack or {})
    styles = ["--", ":", "-.", (0, (3, 1, 1, 1))]
    for i, name in enumerate(attacks):
        ys = [(r.per_attack or {}).get(name) for r in rows]
        if any(v is None for v in ys):
            continue
        ax.plot(
            eps,
            [clean.accuracy, *ys],
            linestyle=styles[i % len(styles)],
            marker=".",
            lw=1.2,
            label=f"after {name} (cumulative)",
        )
    for g in results.gates:
        if g.kind == "min_robust_accuracy" and g.eps is not None and g.threshold is not None:
            ax.plot(
                float(g.eps),
                float(g.threshold),
                marker="_",
                markersize=18,
                mew=2.5,
                color="#2ca02c" if g.passed else "#d62728",
                linestyle="none",
            )
    ax.plot(
        [], [], marker="_", markersize=12, mew=2.5, color="gray", linestyle="none", label="gate threshold"
    )
    norm = (results.threat.norm if results.threat else None) or rows[0].norm or ""
    ax.set_xlabel(f"eps ({norm})")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right" if acc[-1] < 0.5 else "lower left")
    ax.set_title("Robust accuracy vs eps (eps 0 = clean)", fontsize=10)
    return _png(fig)


def per_class(results: AuditResults) -> bytes | None:
    """Heat map of per-class accuracy: clean, then robust at each eps."""
    import numpy as np

    rows = [r for r in results.robust if r.per_class_accuracy]
    clean_pc = results.clean.per_class_accuracy or {}
    if not rows:
        return None
    plt = _pyplot()
    classes = sorted(rows[0].per_class_accuracy, key=lambda k: (len(k), k))
    cols = [("clean", clean_pc)] + [(f"eps {r.eps:g}", r.per_class_accuracy) for r in rows]
    m = np.array([[np.nan if d.get(c) is None else float(d[c]) for _, d in cols] for c in classes])
    fig, ax = plt.subplots(figsize=(1.4 + 0.9 * len(cols), 0.8 + 0.28 * len(classes)))
    ax.imshow(np.ma.masked_invalid(m), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(classes)):
        for j in range(len(cols)):
            v = m[i, j]
            ax.text(j, i, "n/a" if np.isnan(v) else f"{100 * v:.0f}%", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(cols)), [name for name, _ in cols], fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_ylabel("class")
    ax.set_title("Accuracy per class", fontsize=10)
    return _png(fig)


def _to_rgb(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(C, H, W) in [lo, hi] -> (H, W, 3) in [0, 1]: grey for one channel, RGB for three, else channel 0."""
    import numpy as np

    a = (np.clip(a, lo, hi) - lo) / ((hi - lo) or 1.0)
    if a.ndim == 3 and a.shape[0] == 3:
        return np.transpose(a, (1, 2, 0))
    g = a[0] if a.ndim == 3 else a
    return np.repeat(g[..., None], 3, axis=2)


def example_grid(examples: dict[str, Any], bounds: tuple[float, float] = (0.0, 1.0)) -> bytes:
    """Per stored sample: clean, adversarial at the smallest eps that broke it, and the difference.

    Two samples per row. A sample no eps broke shows its image at the largest eps and says so.
    The tiles are composed into one array and drawn with a single ``imshow`` (dozens of axes
    would cost seconds per report).
    """
    import numpy as np

    plt = _pyplot()
    x_clean = np.asarray(examples["x_clean"], dtype=np.float32)
    x_adv = np.asarray(examples["x_adv"], dtype=np.float32)
    eps = np.asarray(examples["eps"], dtype=np.float64)
    y = np.asarray(examples["y"])
    clean_pred = np.asarray(examples["clean_pred"])
    adv_pred = np.asarray(examples["adv_pred"])
    ids = [str(i) for i in examples.get("ids", range(len(y)))]
    k = len(y)
    lo, hi = float(bounds[0]), float(bounds[1])
    h, w = x_clean.shape[-2:]
    per_row = 2 if k > 1 else 1
    n_rows = -(-k // per_row)
    gap = max(1, h // 4)
    cap = max(2, int(round(h * 0.55)))  # room for the two caption lines above each tile
    tile_h, tile_w = h + cap, w + gap
    canvas = np.ones((n_rows * tile_h + gap, 3 * per_row * tile_w + gap * per_row, 3), dtype=np.float32)
    seismic = plt.get_cmap("seismic")
    captions = []
    for i in range(k):
        r, c0 = divmod(i, per_row)
        top = r * tile_h + cap
        left0 = c0 * (3 * tile_w + gap)
        broken = np.nonzero(adv_pred[:, i] != y[i])[0]
        e = int(broken[0]) if broken.size else len(eps) - 1
        diff = x_adv[e, i] - x_clean[i]
        diff = diff.mean(axis=0) if diff.ndim == 3 else diff
        scale = float(np.abs(diff).max()) or 1.0
        tiles = [
            _to_rgb(x_clean[i], lo, hi),
            _to_rgb(x_adv[e, i], lo, hi),
            seismic((diff / scale + 1) / 2)[..., :3],
        ]
        texts = [
            f"{ids[i]}\nlabel {y[i]}, pred {clean_pred[i]}",
            f"eps {eps[e]:g}\n" + (f"pred {adv_pred[e, i]}" if broken.size else "not broken"),
            f"difference\nmax |d| {scale:.3f}",
        ]
        for j, (tile, text) in enumerate(zip(tiles, texts)):
            left = left0 + j * tile_w
            canvas[top : top + h, left : left + w] = tile
            captions.append((left + w / 2 - 0.5, top - 0.8, text))
    fig_w = 7.5
    fig_h = fig_w * canvas.shape[0] / canvas.shape[1]
    fig = plt.figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    for x, yy, text in captions:
        ax.text(x, yy, text, ha="center", va="bottom", fontsize=6, linespacing=1.1)
    ax.set_axis_off()
    return _png(fig)


# -- the figures of audit sections (SectionView.figures) -----------------------------------------


def section_figure(figure: SectionFigure) -> bytes:
    """Draw one figure of a section's view, whichever kind it is."""
    from robustness.core.schema import SectionCurve, SectionHeatmap, SectionImages

    if isinstance(figure, SectionCurve):
        return section_curve(figure)
    if isinstance(figure, SectionHeatmap):
        return section_heatmap(figure)
    if isinstance(figure, SectionImages):
        return section_images(figure)
    raise TypeError(f"unknown section figure {type(figure).__name__}")


def section_curve(curve: SectionCurve) -> bytes:
    """A section's line chart: one line per series, its interval as a band, log axes on request."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    markers = {"line": "o-", "dashed": "s--", "points": "o"}
    for series in curve.series:
        (line,) = ax.plot(series.x, series.y, markers[series.style], lw=1.6, ms=3.5, label=series.name)
        if series.lower is not None and series.upper is not None:
            ax.fill_between(series.x, series.lower, series.upper, color=line.get_color(), alpha=0.15)
    if curve.log_x:
        ax.set_xscale("log")
    if curve.log_y:
        ax.set_yscale("log")
    ax.set_xlabel(curve.x_label)
    ax.set_ylabel(curve.y_label)
    ax.grid(alpha=0.3, which="both" if curve.log_x or curve.log_y else "major")
    if len(curve.series) > 1 or (curve.series and curve.series[0].name):
        ax.legend(fontsize=7)
    ax.set_title(curve.title, fontsize=10)
    return _png(fig)


def section_heatmap(heatmap: SectionHeatmap) -> bytes:
    """A section's table of numbers as colours, each cell written out (as a percentage when the
    scale is [0, 1])."""
    import numpy as np

    plt = _pyplot()
    m = np.array([[np.nan if v is None else float(v) for v in row] for row in heatmap.values], dtype=float)
    n_rows, n_cols = m.shape if m.size else (len(heatmap.rows), len(heatmap.columns))
    fig, ax = plt.subplots(figsize=(1.8 + 0.75 * n_cols, 0.9 + 0.28 * n_rows))
    im = ax.imshow(np.ma.masked_invalid(m), cmap="RdYlGn", vmin=heatmap.lo, vmax=heatmap.hi, aspect="auto")
    as_pct = heatmap.lo == 0.0 and heatmap.hi == 1.0
    for i in range(n_rows):
        for j in range(n_cols):
            v = m[i, j]
            text = "n/a" if np.isnan(v) else (f"{100 * v:.0f}%" if as_pct else f"{v:.3g}")
            ax.text(j, i, text, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(n_cols), heatmap.columns, fontsize=8)
    ax.set_yticks(range(n_rows), heatmap.rows, fontsize=8)
    ax.set_xlabel(heatmap.column_label)
    ax.set_ylabel(heatmap.row_label)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02, label=heatmap.value_label)
    ax.set_title(heatmap.title, fontsize=10)
    return _png(fig)


def section_images(strip: SectionImages) -> bytes:
    """A section's strip of small images with a caption under each, composed into one array."""
    import numpy as np

    plt = _pyplot()
    tiles = []
    for image in strip.images:
        a = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
        tiles.append(np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3])
    if not tiles:
        raise ValueError("a strip of images needs at least one image")
    h = max(t.shape[0] for t in tiles)
    w = max(t.shape[1] for t in tiles)
    gap = max(1, w // 4)
    per_row = min(len(tiles), 8)
    n_rows = -(-len(tiles) // per_row)
    cap = max(2, int(round(h * 0.35)))
    canvas = np.ones((n_rows * (h + cap) + gap, per_row * (w + gap) + gap, 3), dtype=np.float32)
    places = []
    for k, tile in enumerate(tiles):
        r, c = divmod(k, per_row)
        top, left = gap + r * (h + cap), gap + c * (w + gap)
        canvas[top : top + tile.shape[0], left : left + tile.shape[1]] = tile
        places.append((left + w / 2 - 0.5, top + h - 0.2))
    fig_w = min(7.5, 1.0 * per_row + 0.5)
    fig = plt.figure(figsize=(fig_w, fig_w * canvas.shape[0] / canvas.shape[1]))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(canvas, interpolation="nearest")
    for (x, y), text in zip(places, strip.captions):
        ax.text(x, y, text, ha="center", va="top", fontsize=6, linespacing=1.1)
    ax.set_axis_off()
    return _png(fig)
