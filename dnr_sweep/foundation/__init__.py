"""The bottom floor, imported by every other layer and importing none of them: the run contract (file and
metric names), user-facing errors, atomic files, storage locations (local or URI), folder locks, safe YAML,
the one HTTP client (``http.py``: deadlines, byte caps; data fetch and the Ray job API), the one JSON reader
(``reader.py``) with the schemas of every JSON file the tool reads (``schemas.py``, ``tune_schemas.py``).
No torch here except where a module says so.
"""
