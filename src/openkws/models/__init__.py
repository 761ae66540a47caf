"""The packaged default model: ``default/`` holds its ONNX graphs, ``model.json`` and model card."""
