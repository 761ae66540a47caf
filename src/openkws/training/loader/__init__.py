"""The training data loader, one concern per module:

- :mod:`.clips`: manifest -> :class:`Clip` s, train/validation selection;
- :mod:`.renditions`: augmentation glue (speaker, context, rooms; partial cuts);
- :mod:`.feature_cache`: sharded, resumable front-end feature cache (speech-embedding);
- :mod:`.wave_store`: in-memory waveforms (log-mel, augmented on the fly);
- :mod:`.neighbours`: confusable pronunciations (one phoneme edit);
- :mod:`.sampler`: K keywords x M utterances batches;
- :mod:`.background`: background windows and which proxies they are negatives for;
- :mod:`.batcher`: indices -> :class:`Batch`;
- :mod:`.feed`: one epoch's batches (DataLoader workers) -> the objective's tensors.
"""
