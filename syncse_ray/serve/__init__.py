"""Serving: an OpenAI-compatible embeddings and retrieval endpoint on Ray Serve.

Pure request/response logic (no Ray import), unit-tested without a cluster:
- `http`: the FastAPI app (`create_api(backend)`): typed request/response models in its OpenAPI, auth, limits;
- `protocol`: request and response models, limits, validation, the OpenAI error shape;
- `responses`: vectors -> response bodies: `dimensions` truncation + re-normalization, float / base64
  (little-endian float32);
- `tokens`: token counting and truncation to the model's max tokens;
- `encoder`: the sentence-transformers model behind both the endpoint and the index;
- `index`: the FAISS corpus index (build from text / JSONL / Parquet, save, load, search).

- `index_stage`: the pipeline's index stage (`run_index(cfg)`: serve.corpus into <run_dir>/index).

The Ray Serve application (`app`) is a thin layer over these; the `syncse serve` / `syncse index build` commands
are in `syncse_ray.cli.serve`. Batching by a token budget is `syncse_ray.models.batching`.
"""
