"""Training: supervised (or unsupervised) SimCSE on Ray Train with DeepSpeed or DDP.

    from syncse_ray.train import run_train
    result = run_train(cfg)          # -> TrainResult(best_dir, final_dir, best_score, steps, ...)

Pure modules (no Ray): losses, model, data, export, dev. Ray Train lives in loop (the per-worker loop) and
trainer (the driver).
"""

from __future__ import annotations

__all__ = ["TrainError", "TrainInputError", "TrainResult", "run_train"]


def __getattr__(name: str):
    # Lazy: importing the pure modules (losses, model, ...) must not import Ray.
    if name in __all__:
        from syncse_ray.train import trainer

        return getattr(trainer, name)
    raise AttributeError(name)
