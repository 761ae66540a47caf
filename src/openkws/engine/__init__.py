"""Pure detection core: features, encoders, index, scoring, stream decisions (numpy/onnxruntime/faiss)."""
