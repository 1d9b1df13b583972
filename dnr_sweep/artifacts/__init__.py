"""What a run leaves on disk and reads back: checkpoints (``checkpoint``, ``weights_only`` loads), their compact
tensor encoding (``state_codec``), and a trained model folder (``model_folder``).
"""
