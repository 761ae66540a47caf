"""Data layer: TTS synthesis, augmentation, splits, evaluation sets."""
