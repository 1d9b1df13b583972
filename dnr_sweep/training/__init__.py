"""One DNR run, epoch by epoch (``engine``); its lifecycle on disk, shared by ``train`` and every sweep trial
(``lifecycle``: epoch record, checkpoints, selected weights, finish); ``train`` without Ray (``single_run``); its
ending (``finish``, ``post_training``: stronger attacks, exports) and the dry preparation that ``validate`` runs
(``dry_run``).
"""
