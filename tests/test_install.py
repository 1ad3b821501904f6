"""The environment scripts/setup.sh builds: transformers model classes import (the CPU vLLM build drags in
torchvision/torchaudio/torchcodec wheels that break them), and vLLM imports."""

import importlib.metadata as md
import subprocess
import sys

import pytest


@pytest.mark.slow  # imports vLLM in a fresh interpreter (~10 s)
def test_transformers_model_classes_import():
    # A fresh interpreter: the failure ("operator torchvision::nms does not exist") happens at import time.
    code = (
        "from transformers import AutoModel, AutoModelForCausalLM, BertModel, RobertaModel, LlamaForCausalLM;"
        "import sentence_transformers, vllm; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("ok")


def test_broken_vision_audio_builds_are_absent():
    for name in ("torchvision", "torchaudio", "torchcodec"):
        try:
            md.version(name)
        except md.PackageNotFoundError:
            continue
        raise AssertionError(f"{name} is installed; scripts/setup.sh removes it (it breaks transformers imports)")
