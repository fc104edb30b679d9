"""The report's CSV files, written so that a spreadsheet shows every text cell as text.

One concept: how a table leaves the report as CSV. A spreadsheet (Excel, LibreOffice, Google
Sheets) reads a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab or a
carriage return) as a formula, so a task name, study name, device or reason stored by a user's code
could run as one when ``trials.csv`` or ``compare.csv`` is opened ("CSV injection", OWASP). Such a
text cell is written with a leading apostrophe (``'=1+2``), the mark spreadsheets use for "text,
not a formula"; numbers, empty cells and every other text are written as they are. A program
reading the CSV sees the apostrophe: strip one leading ``'`` from a text cell to get the stored
text back.
"""

from __future__ import annotations

import os

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a text cell as a formula."""


def spreadsheet_text(value: object) -> object:
    """``value`` with a leading ``'`` when it is a string a spreadsheet would read as a formula;
    anything else unchanged."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``frame`` (its index left out) as UTF-8 CSV, every text cell through :func:`spreadsheet_text`."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = out[col].map(spreadsheet_text)
    out.columns = [spreadsheet_text(str(c)) for c in out.columns]
    out.to_csv(path, index=False)
