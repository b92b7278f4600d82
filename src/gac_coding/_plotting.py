"""The figures of :mod:`gac_coding.analysis`: who owns them and how they show (imports matplotlib).

Where a figure can be shown (a notebook's inline backend, a GUI backend) it is made by pyplot, so
``plt.show()`` shows it and pyplot's rules apply: the inline backend shows every open figure once at
the end of a cell and closes it; a GUI backend keeps it open until its window is closed or
``plt.close``. Under matplotlib's non-interactive backends (Agg, the file formats: scripts, CI) it
is a stand-alone ``Figure`` that pyplot never sees, so nothing accumulates in ``plt.get_fignums()``.

matplotlib_inline (0.2.2 checked) shows a pyplot figure twice when it is the last expression of a
cell: once as the cell's result (IPython's figure formatter) and again when the end-of-cell flush
shows every figure pyplot still holds. :class:`PlotFigure` lets go of pyplot when IPython formats
it under the inline backend, so whichever comes first (the result, ``plt.show()``, ``display``,
the flush) shows it and nothing shows it again.
"""

from __future__ import annotations

from typing import Any

import matplotlib
from matplotlib.figure import Figure

# matplotlib's built-in backends that cannot show a figure (plt.show() does nothing there)
NON_INTERACTIVE = frozenset({"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"})
INLINE = frozenset({"inline", "module://matplotlib_inline.backend_inline"})


def _backend() -> str:
    return str(matplotlib.get_backend()).lower()


class PlotFigure(Figure):
    """A matplotlib ``Figure`` that the inline backend shows exactly once."""

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> None:
        # IPython calls this first whenever it displays the figure (the cell's result, display(),
        # plt.show()); the image itself comes from IPython's own figure formatter right after
        if _backend() in INLINE:
            import matplotlib.pyplot as plt

            plt.close(self)  # shown now: the end-of-cell flush must not show it again
        return None


def new_figure(width: float, height: float) -> PlotFigure:
    """A constrained-layout figure, made by pyplot where the backend can show it."""
    import matplotlib.pyplot as plt  # resolves the backend (auto-selection needs pyplot)

    if _backend() in NON_INTERACTIVE:
        return PlotFigure(figsize=(width, height), layout="constrained")
    fig = plt.figure(figsize=(width, height), layout="constrained", FigureClass=PlotFigure)
    assert isinstance(fig, PlotFigure)
    return fig
