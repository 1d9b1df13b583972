"""``report/index.html``: one static page with every figure (PNG by relative path) and the tables.

While a sweep runs the page is *live*: it says so ("live, 3 of 10 trials finished, updated 14:05"),
and the browser reloads it every ``refresh_s`` seconds; the final page says "final". Files are
replaced atomically (:func:`dnr_sweep.foundation.files.atomic_write_handle`), so a reader never sees half a page or figure.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from dnr_sweep.foundation.files import atomic_write_handle


@dataclass(frozen=True)
class FigureEntry:
    """A figure on the page: title, caption and the PNG's path relative to the page."""

    title: str
    caption: str
    png: str


@dataclass(frozen=True)
class TableEntry:
    """A table on the page: title, a sentence above it (e.g. which split chose) and the table."""

    title: str
    table: pd.DataFrame
    note: str = ""


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; } .note { font-size: 0.9em; color: #333; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.9em; color: #444; margin-top: 0.3em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { padding: 0.25em 0.7em; text-align: right; border-bottom: 1px solid #ddd; }
th { border-bottom: 2px solid #444; } td:nth-child(-n+4), th:nth-child(-n+4) { text-align: left; }
.status { display: inline-block; padding: 0.15em 0.6em; border-radius: 0.3em; font-size: 0.9em; }
.live { background: #fff3cd; color: #664d03; } .final { background: #d1e7dd; color: #0f5132; }
"""


@dataclass(frozen=True)
class PageStatus:
    """Whether the page is live (the sweep still runs) and what to say about it."""

    text: str  # e.g. "live, 3 of 10 trials finished, updated 14:05" or "final"
    refresh_s: int | None = None  # the browser reloads the page this often (live pages only)

    @property
    def live(self) -> bool:
        return self.refresh_s is not None


FINAL = PageStatus("final")


def render_index(
    title: str,
    figures: Sequence[FigureEntry],
    tables: Sequence[TableEntry],
    *,
    meta: str = "",
    links: Sequence[tuple[str, str]] = (),
    status: PageStatus = FINAL,
) -> str:
    """The page's HTML text: a header, the figures in order, the tables, links to downloads."""
    esc = html.escape
    refresh = f'<meta http-equiv="refresh" content="{int(status.refresh_s)}">' if status.live else ""
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8">{refresh}',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p><span class="status {"live" if status.live else "final"}">{esc(status.text)}</span></p>',
    ]
    if meta:
        parts.append(f'<p class="meta">{esc(meta)}</p>')
    for fig in figures:
        parts.append(
            f'<h2>{esc(fig.title)}</h2><figure><img src="{esc(fig.png)}" alt="{esc(fig.title)}">'
            f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
        )
    for entry in tables:
        parts.append(f"<h2>{esc(entry.title)}</h2>")
        if entry.note:
            parts.append(f'<p class="note">{esc(entry.note)}</p>')
        parts.append(entry.table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.2f}", border=0))
    if links:
        parts.append("<h2>Files</h2><ul>")
        parts += [f'<li><a href="{esc(href)}">{esc(text)}</a></li>' for text, href in links]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_index(
    out_dir: str | os.PathLike[str],
    title: str,
    figures: Sequence[FigureEntry],
    tables: Sequence[TableEntry],
    *,
    meta: str = "",
    links: Sequence[tuple[str, str]] = (),
    status: PageStatus = FINAL,
) -> Path:
    """Write ``<out_dir>/index.html`` (atomically) and return its path."""
    text = render_index(title, figures, tables, meta=meta, links=links, status=status).encode("utf-8")
    return atomic_write_handle(Path(out_dir) / "index.html", lambda handle: handle.write(text))
