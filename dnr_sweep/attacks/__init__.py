"""Adversarial attacks in [0, 1] pixel space: FGSM and PGD (``gradient``), bit-exact to torchattacks 3.5.1 on
CPU; TRADES' KL adversary and robust term (``trades``), HYDRA's training loss. The grammar of attack names is
vocabulary and lives in :mod:`dnr_sweep.foundation.attack_names`.
"""
