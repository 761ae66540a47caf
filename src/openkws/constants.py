"""Audio constants shared by training and serving (one definition, never scattered literals)."""

SAMPLE_RATE = 16_000
MEL_WINDOW_SAMPLES = 512  # the bundled melspectrogram.onnx uses a 512-sample (32 ms) window
MEL_HOP_SAMPLES = 160  # 10 ms hop
MEL_BINS = 32
EMBEDDING_WINDOW_MEL_FRAMES = 76  # speech-embedding model input: 76 mel frames (~775 ms)
EMBEDDING_HOP_MEL_FRAMES = 8  # one speech embedding every 8 mel frames (80 ms)
SPEECH_EMBEDDING_DIM = 96
# One PCM scale end to end: int16 sample v <-> float v / PCM_SCALE in [-1, 1); the mel graph takes v.
PCM_SCALE = 32768.0
