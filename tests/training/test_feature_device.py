"""The feature cache's front-end follows ``train.device`` like the service: ``auto`` takes CUDA only
when onnxruntime offers it, ``cuda`` refuses clearly without it, and features do not depend on it."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from openkws.engine.model_spec import ModelContractError
from openkws.training.nets.frontend import feature_extractor


def test_auto_and_cpu_give_the_same_features() -> None:
    audio = np.random.default_rng(0).uniform(-0.3, 0.3, 24_000).astype(np.float32)
    cpu = feature_extractor("speech_embedding", device="cpu").features(audio)
    auto = feature_extractor("speech_embedding", device="auto")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert auto.mel.get_providers() == ["CPUExecutionProvider"]
    assert cpu.shape[1] == 96 and np.allclose(auto.features(audio), cpu, atol=1e-3)


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="checks the refusal without CUDA"
)
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(ModelContractError, match="install the `gpu` extra"):
        feature_extractor("speech_embedding", device="cuda")
