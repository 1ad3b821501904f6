"""`syncse train CONFIG [--set k=v ...]`: train an encoder with the config's train section (docs/train.md)."""

from __future__ import annotations

from syncse_ray.cli.common import ConfigPath, SetOption, console, load_command_config


def train_command(config: ConfigPath, set_: SetOption = None) -> None:
    """Train a sentence encoder with (supervised or unsupervised) SimCSE on Ray Train; resumes an interrupted
    run of the same config from its latest checkpoint."""
    cfg = load_command_config(config, set_)

    from syncse_ray.train import run_train

    result = run_train(cfg)
    console.print(f"[green]trained[/] {result.steps} steps; best dev score {result.best_score:.2f} "
                  f"(step {result.best_step}, mean of STS-B dev and SICK-R dev)")
    console.print(f"best:    {result.best_dir}\nfinal:   {result.final_dir}\nmetrics: {result.metrics_path}")
