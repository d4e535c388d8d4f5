"""An interpreter like this one but without some installed packages, for the promises a
program without an optional extra relies on."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import vandamme_oauth


def python_without(tmp_path: Path, *packages: str) -> list[str]:
    """The start of a command line for this interpreter with every installed distribution but
    ``packages``: the site folder's entries are linked into ``tmp_path`` (less theirs, and
    their ``*.dist-info``), and the interpreter runs with no site processing. Append the
    code to run."""
    module = importlib.import_module(packages[0])
    where = module.__file__ or next(iter(module.__path__))  # a namespace package has no file
    site = Path(where).resolve().parents[0 if module.__file__ is None else 1]
    left_out = tuple(p.lower() for p in packages)
    for entry in site.iterdir():
        if not entry.name.lower().startswith(left_out):
            (tmp_path / entry.name).symlink_to(entry)
    path = [str(tmp_path)]
    source = Path(vandamme_oauth.__file__).resolve().parents[1]
    if source != site:  # an editable install: the package's folder is not in site-packages
        path.append(str(source))
    prelude = f"import sys; sys.path[:0] = {path!r}; exec(sys.argv.pop(1))"
    return [sys.executable, "-S", "-c", prelude]
