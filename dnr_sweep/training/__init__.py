"""One DNR run, epoch by epoch (``engine``), without Ray (``single_run``), its ending (``finish``,
``post_training``: stronger attacks, exports) and the dry preparation that ``validate`` runs (``dry_run``).
"""
