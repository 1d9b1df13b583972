"""The Ray Tune side: from a validated :class:`~dnr_sweep.config.SweepConfig` to a finished experiment.

One module per concept: ``search`` (domains, searcher, scheduler), ``tuner`` (the Tuner and ``fit``),
``cluster`` (starting or joining Ray), ``run_folder``, ``restore`` (can a folder be resumed), ``outcome``,
``results`` (tables at the end), ``trainable`` (the Tune Trainable), ``catch_up`` (a trial after a killed driver),
``live`` (the live report), ``jobs`` (Ray Jobs), ``grouped_asha``, ``dashboard_metrics``, ``status`` (``dnr-sweep
status``: the sweep from its files). Only this package and ``cli`` import Ray, and ``status`` does not (this file
imports nothing).
"""
