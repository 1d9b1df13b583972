"""The bottom floor, imported by every other layer and importing none of them: the run contract (file and
metric names), user-facing errors, atomic files, storage locations (local or URI), folder locks, safe YAML,
the one HTTP client (``http.py``: deadlines, byte caps; data fetch and the Ray job API).
No torch here except where a module says so.
"""
