from pathlib import Path

import pytest

from syncse_ray.config import Config, ConfigError, dump_config, load_config


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_defaults_and_yaml(tmp_path):
    cfg = load_config(write(tmp_path, "name: demo\ntrain:\n  lr: 1.0e-5\n  num_workers: 2\n"))
    assert cfg.name == "demo"
    assert cfg.train.lr == 1e-5 and cfg.train.num_workers == 2
    assert cfg.synth.positive_sampling.top_p == 0.9  # paper default
    assert cfg.synth.sentence_sampling.temperature == 1.3


def test_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "train:\n  lr: 1.0e-5\n"),
                      ["train.lr=3e-5", "synth.engine.num_engines=2", "eval.tasks=[sts, mteb:STS12]",
                       "synth.limit=null"])
    assert cfg.train.lr == 3e-5
    assert cfg.synth.engine.num_engines == 2
    assert cfg.eval.tasks == ["sts", "mteb:STS12"]
    assert cfg.synth.limit is None


def test_unknown_key_names_its_path(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.learning_rate: unknown key"):
        load_config(write(tmp_path, "train:\n  learning_rate: 1.0e-5\n"))
    with pytest.raises(ConfigError, match=r"synth\.engine\.gpus: unknown key"):
        load_config(None, ["synth.engine.gpus=1"])


def test_bad_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.lr: .*'fast'"):
        load_config(write(tmp_path, "train:\n  lr: fast\n"))
    with pytest.raises(ConfigError, match=r"train\.num_workers"):
        load_config(None, ["train.num_workers=0"])
    with pytest.raises(ConfigError, match=r"synth\.mode"):
        load_config(None, ["synth.mode=everything"])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: [\n"))
    with pytest.raises(ConfigError, match="mapping at the top"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match=r"train\.lr is not a section"):
        load_config(write(tmp_path, "train:\n  lr: 1.0e-5\n"), ["train.lr.x=1"])
    with pytest.raises(ConfigError, match=r"train\.lr: Input should be a valid number"):
        load_config(None, ["train.lr.x=1"])


def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNCSE_DATA_DIR", str(tmp_path))
    assert Config().data_dir == tmp_path
    assert load_config(None, ["data_dir=/elsewhere"]).data_dir == Path("/elsewhere")


def test_dump_roundtrip(tmp_path):
    cfg = load_config(None, ["train.lr=2e-5"])
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.yaml"))
    assert files, "configs/ holds no recipes"
    for f in files:
        load_config(f)


def test_data_dir_and_run_dir_placeholders(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCSE_DATA_DIR", "/data/here")
    cfg = load_config(write(tmp_path, 'run_dir: /runs/a\nsynth:\n  input: "{data_dir}/seeds/x.txt"\n'
                                      'train:\n  data: "{run_dir}/other/data"\n'))
    assert cfg.synth.input == Path("/data/here/seeds/x.txt")
    assert cfg.train.data == Path("/runs/a/other/data")
    cfg = load_config(None, ["data_dir=/d2", "synth.input={data_dir}/s.txt", "train.data={run_dir}"])
    assert cfg.synth.input == Path("/d2/s.txt") and cfg.train.data == Path("runs/syncse")
