"""The look every report figure shares: resolution, seaborn style, colours, axis formatting.

One concept: how a figure of this product looks, whichever module draws it
(:mod:`sensitivity.report.figures`, :mod:`sensitivity.report.heatmaps`). Figures are
:class:`matplotlib.figure.Figure` objects with an Agg canvas attached explicitly (:func:`new_figure`;
no pyplot, no global backend switch), drawn inside :func:`style`.

* :data:`AXIS_LABELS` -- the name of each hyperparameter axis; :data:`DIVERGED` -- a diverged point's legend entry;
* :data:`DPI`, :func:`style`, :func:`new_figure` -- resolution, seaborn whitegrid style, a headless figure;
* :func:`optimizer_colors` -- one fixed colour per optimizer (colour-blind palette, catalog order);
* :func:`optimizer_lines`, :func:`side_by_side` -- with it a dash pattern, and lines that coincide drawn
  next to each other, so that every one stays visible;
* :func:`format_lr`, :func:`plain_log_labels`, :func:`log_ok` -- log-lr and log-metric axes;
* :func:`suptitle`, :func:`wrapped`, :func:`fit_labels`, :func:`legend_below` -- titles, labels and legends
  broken to fit their figure or axes (every figure ends with :func:`fit_labels`);
* :func:`literal_text`, :func:`literal_names` -- user text (task and study names, metric labels,
  display names) drawn as written, never as mathtext;
* :func:`metric_words`, :func:`metric_axis_label` -- the study's declaration of a metric (label and unit);
* :func:`heatmap_norm`, :func:`text_color` -- a heatmap's colour scale and readable cell text;
* :data:`LR_CMAP` -- the colour map of learning rates (loss curves).
"""

from __future__ import annotations

import contextlib
import math
import textwrap
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping

import matplotlib
import matplotlib.colors as mcolors
import matplotlib.ticker as ticker
import numpy as np
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from sensitivity.report import metrics

if TYPE_CHECKING:  # for the annotations only: the analysis imports nothing from here
    from sensitivity.report.analysis import AnalysisSettings

AXIS_LABELS = {
    "lr": "learning rate",
    "beta1": "beta1",
    "beta2": "beta2",
    "gamma": "gamma (extrapolation)",
    "weight_decay": "weight decay",
}
"""How each hyperparameter axis is named in titles, labels and table headings."""

DIVERGED = "diverged (counted at the initial value)"
"""The legend entry of a diverged point, in every figure that crosses one (a diverged run counts as
its initial value, L0, in every metric; the report's words say it the same way)."""

DPI = 130
"""Resolution the report saves figures at (dots per inch)."""

LR_CMAP = mcolors.LinearSegmentedColormap.from_list(
    "lr", matplotlib.colormaps["plasma"](np.linspace(0.0, 0.85, 256))
)
"""Colour map of learning rates: plasma without its pale-yellow end, which vanishes on white."""


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Seaborn's whitegrid style and notebook context (font scale 0.9), only while the block draws."""
    with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.9), matplotlib.rc_context(
        {"figure.dpi": 100, "savefig.dpi": DPI, "axes.titlesize": "medium", "legend.fontsize": "small",
         "text.usetex": False}  # a user's matplotlibrc with usetex would send titles to LaTeX
    ):
        yield


def wrapped(text: str, width: int) -> str:
    """``text`` broken into lines of at most ``width`` characters (existing line breaks kept), so that a
    long metric label or title fits its axis or figure instead of running off the edge."""
    return "\n".join(textwrap.fill(line, width) if len(line) > width else line for line in str(text).split("\n"))


def _length(artist, renderer) -> float:
    """How long ``artist`` is drawn along its own direction: the height of a vertical text (a y label),
    the width of any other."""
    extent = artist.get_window_extent(renderer)
    return extent.height if 45 < artist.get_rotation() % 180 < 135 else extent.width


def _fit_lines(artist, text: str, room: float, renderer) -> bool:
    """Set ``artist``'s text to ``text`` with each line longer than ``room`` pixels (as ``artist`` draws
    it, measured with ``renderer``) broken at spaces until every line fits, into as few lines as that
    takes, as even as they come (no one-word last line). Existing line breaks are kept, and so is a
    line that fits or has no space to break at. Returns whether the text changed."""
    before = artist.get_text()

    def length(line: str) -> float:
        artist.set_text(line)
        return _length(artist, renderer)

    lines = []
    for line in str(text).split("\n"):
        wide = length(line)
        if wide <= room or " " not in line.strip():
            lines.append(line)
            continue
        chars = max(10, int(len(line) * room / wide))
        while chars > 10:
            pieces = textwrap.wrap(line, chars)
            if all(length(p) <= room for p in pieces):
                break
            chars -= max(1, chars // 20)
        count = len(textwrap.wrap(line, chars))
        # as many lines, as even as they come (no one-word last line)
        even = next((c for c in range(math.ceil(len(line) / count), chars)
                     if len(textwrap.wrap(line, c)) == count and all(length(p) <= room for p in textwrap.wrap(line, c))),
                    chars)
        lines.extend(textwrap.wrap(line, even))
    artist.set_text("\n".join(lines))
    return artist.get_text() != before


def suptitle(fig: Figure, text: str, **kwargs):
    """``fig.suptitle(text, **kwargs)``, with each line that would be wider than the figure broken at
    spaces until every line fits (measured with the figure's own renderer, so a title that fits is
    drawn exactly as written). A narrow figure (one optimizer, one panel) keeps its whole title in view.

    Returns the title's :class:`matplotlib.text.Text`.
    """
    title = fig.suptitle(text, **kwargs)
    _fit_lines(title, text, 0.96 * fig.bbox.width, fig.canvas.get_renderer())
    return title


def legend_below(fig: Figure, handles, labels, **kwargs):
    """``fig.legend`` below the panels (``loc="outside lower center"``, no frame): in one row when it
    fits the figure's width, else in as few rows as do (a narrow figure of one panel, many
    optimizers). Constrained layout makes room for its height only, so a row wider than the figure
    would run past both edges. Returns the legend."""
    renderer = fig.canvas.get_renderer()
    room = 0.96 * fig.bbox.width  # measured at the figure's dpi; glyphs are a little wider at the saved DPI
    for ncols in range(max(len(labels), 1), 0, -1):
        legend = fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False, **kwargs)
        if ncols == 1 or legend.get_window_extent(renderer).width <= room:
            return legend
        legend.remove()
    return legend


def fit_labels(fig: Figure) -> Figure:
    """Break every axis label and axes title longer than its axes into lines that fit; call it last,
    when a figure is drawn.

    Constrained layout makes room for an x label's height and a y label's width, not for their length
    (matplotlib collapses that direction when it lays out, ``Axis.get_tightbbox(for_layout_only=True)``,
    and does the same for axes titles): an x label or title wider than its axes, centred on it, runs
    past the figure's edge, where the saved image cuts it. So each line of an x label or centred title
    is kept within its axes' width, a y label (a colour bar's included) within its axes' height, and a
    left title within the room from its axes to the figure's right edge; measured at the resolution
    the figure is saved at (:data:`DPI`), after the layout, until nothing changes (a legend below the
    panels is fitted when it is made, :func:`legend_below`). Returns ``fig``.
    """
    shown = fig.get_dpi()
    fig.set_dpi(DPI)  # text is measured as it will be saved (glyph widths do not scale exactly with the dpi)
    try:
        for _ in range(4):
            fig.get_layout_engine().execute(fig)  # the layout alone: places the axes, draws nothing
            renderer = fig.canvas.get_renderer()
            changed = False
            right = fig.bbox.x1
            for ax in fig.axes:
                if not ax.get_visible():
                    continue
                box = ax.bbox
                rooms = ((ax.xaxis.label, box.width), (ax.title, box.width), (ax.yaxis.label, box.height),
                         (getattr(ax, "_left_title", None), right - box.x0),
                         (getattr(ax, "_right_title", None), box.x1 - fig.bbox.x0))
                for text, room in rooms:
                    if text is not None and text.get_visible() and text.get_text():
                        changed |= _fit_lines(text, text.get_text(), 0.98 * room, renderer)
            if not changed:
                break
    finally:
        fig.set_dpi(shown)
    return fig


def new_figure(**kwargs) -> Figure:
    """A constrained-layout :class:`~matplotlib.figure.Figure` with its own Agg canvas (headless)."""
    fig = Figure(layout="constrained", **kwargs)
    FigureCanvasAgg(fig)
    return fig


def format_lr(lr: float) -> str:
    """A learning rate as ``1e-3`` / ``3e-4`` / ``3.16e-4`` (at most 3 significant digits)."""
    if not np.isfinite(lr) or lr <= 0:
        return str(lr)
    exp = math.floor(math.log10(lr) + 1e-9)
    mant = float(f"{lr / 10 ** exp:.3g}")
    if mant >= 10:
        mant, exp = mant / 10, exp + 1
    m = f"{mant:g}"
    return f"{m}e{exp}"


def optimizer_colors(names: Iterable[str]) -> dict[str, tuple]:
    """A fixed colour per optimizer (colour-blind palette, in catalog order)."""
    order = metrics.optimizer_order(names)
    palette = sns.color_palette("colorblind", max(len(order), 3))
    return {n: palette[i % len(palette)] for i, n in enumerate(order)}


LINE_DASHES = ((), (5.0, 2.0), (1.2, 1.8), (6.0, 1.8, 1.2, 1.8), (2.6, 1.8), (6.0, 1.8, 1.2, 1.8, 1.2, 1.8))
"""Dash patterns of :func:`optimizer_lines`, in catalog order (``()``: solid); cycled past six."""


def optimizer_lines(names: Iterable[str], lw: float = 1.8, zorder: float = 2.0) -> dict[str, dict]:
    """Per optimizer, the keyword arguments of its line in every figure: its colour
    (:func:`optimizer_colors`), its own dash pattern (:data:`LINE_DASHES`, in catalog order) and the
    common width ``lw``. The solid line is drawn lowest and each dashed one above it (``zorder``), so
    where two or three lines lie on each other (two optimizers clipped at L0) each shows in the gaps
    of those above it, and the legend tells them apart by pattern as well as colour. Where many
    coincide by construction (performance profiles), :func:`side_by_side` draws them next to each other.

    Args:
        names: the optimizers drawn (any order; styled in catalog order).
        lw: the lines' width; zorder: the lowest line's (each later one 0.01 higher).
    """
    order = metrics.optimizer_order(names)
    colors = optimizer_colors(order)
    out = {}
    for i, name in enumerate(order):
        dashes = LINE_DASHES[i % len(LINE_DASHES)]
        out[name] = {"color": colors[name], "lw": lw, "zorder": zorder + 0.01 * i,
                     "linestyle": (0, dashes) if dashes else "-", "dash_capstyle": "butt"}
    return out


def side_by_side(ax, i: int, n: int, spacing: float):
    """A transform drawing line ``i`` of ``n`` shifted by ``(i - (n - 1) / 2) * spacing`` points to the
    right and up from its data: lines that coincide (a step function's horizontal and vertical
    segments alike) lie next to each other instead of on each other; a line alone moves by at most
    ``(n - 1) / 2 * spacing`` points, which the figure states."""
    shift = (i - (n - 1) / 2) * spacing / 72
    return ax.transData + ScaledTranslation(shift, shift, ax.get_figure(root=True).dpi_scale_trans)


def literal_text(text: object) -> str:
    """``text`` as matplotlib should draw it, character for character: every ``$`` escaped as ``\\$``.

    Matplotlib reads a string holding an even number of unescaped ``$`` as mathtext, so a metric
    label ``"loss in $^$"`` fails to draw and ``"$x$"`` comes out as an italic x. Every string that
    carries user text (a task, study or metric name, a metric's label or unit, an optimizer's
    stored display name) passes through here once, where a figure receives it; the figures never
    use mathtext themselves, and :func:`style` keeps ``text.usetex`` off. Escaping twice would
    show the backslash, so only raw user text is passed in.
    """
    return str(text).replace("$", r"\$")


def literal_names(names: Mapping[str, str] | None) -> dict[str, str]:
    """A name -> display-name mapping with every display name through :func:`literal_text`."""
    return {k: literal_text(v) for k, v in (names or {}).items()}


def _declared(metric: str, settings: AnalysisSettings | None) -> tuple[str, str]:
    """(label, unit) of ``metric``: the analysed study's own declaration when ``settings`` (an
    :class:`~sensitivity.report.analysis.AnalysisSettings`) is of that metric, else the registry's."""
    if settings is not None and settings.metric == metric and settings.metric_label:
        return settings.metric_label, settings.metric_unit
    return metrics.metric_label(metric), metrics.metric_unit(metric)


def metric_words(metric: str, settings: AnalysisSettings | None = None) -> str:
    """``validation loss``: the metric's declared label, drawable as written (:func:`literal_text`).
    With ``settings``, the analysed study's declaration (see :func:`metric_axis_label`)."""
    return literal_text(_declared(metric, settings)[0])


def metric_axis_label(metric: str, settings: AnalysisSettings | None = None) -> str:
    """``validation loss (nats/char)``: the study's own declaration of the metric (label and unit),
    drawable as written (:func:`literal_text`). Pass the analysis's ``settings`` wherever one study
    is drawn beside others: the process-wide registry holds the declaration of the study loaded
    last (``val_loss`` is nats/example for a classifier, nats/char for char-lm)."""
    label, unit = _declared(metric, settings)
    return literal_text(f"{label} ({unit})" if unit else label)


def plain_log_labels(axis, values) -> None:
    """Label a log axis with plain numbers (0.3, 2) instead of 3x10^-1; minor ticks at 2, 3 and 5
    are labelled too when the data span fewer than 2.5 decades."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    axis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    if v.size and np.log10(v.max() / v.min()) < 2.5:
        def minor(x, _):
            lead = round(x / 10 ** math.floor(math.log10(x) + 1e-9))
            return f"{x:g}" if lead in (2, 3, 5) else ""

        axis.set_minor_formatter(ticker.FuncFormatter(minor))
    else:
        axis.set_minor_formatter(ticker.NullFormatter())


def log_ok(values) -> bool:
    """Whether ``values`` suit a log axis: all finite ones positive, spanning more than a factor 3."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool((v > 0).all()) and v.max() / v.min() > 3


def heatmap_norm(values: np.ndarray, *, higher_is_better: bool) -> mcolors.Normalize:
    """One colour scale for every panel of a heatmap: logarithmic for a positive minimised metric
    (``higher_is_better`` False) spanning more than a factor 3 (:func:`log_ok`), linear otherwise."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return mcolors.Normalize(0.0, 1.0)
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        lo, hi = lo - 0.5 * abs(lo or 1.0), hi + 0.5 * abs(hi or 1.0)
    if not higher_is_better and log_ok(v):
        return mcolors.LogNorm(vmin=lo, vmax=hi)
    return mcolors.Normalize(vmin=lo, vmax=hi)


def text_color(rgba) -> str:
    """Black or white, whichever reads on a cell of colour ``rgba`` (luma threshold 0.55)."""
    r, g, b = rgba[:3]
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "white"
