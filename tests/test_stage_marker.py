from syncse_ray.config import load_config
from syncse_ray.runtime.stage_marker import fingerprint, is_done, mark_done, read_marker


def test_marker_matches_only_the_same_settings(tmp_path):
    a = load_config(None, ["train.lr=1e-5"]).train
    b = load_config(None, ["train.lr=2e-5"]).train
    assert fingerprint(a) == fingerprint(load_config(None, ["train.lr=1e-5"]).train)
    assert fingerprint(a) != fingerprint(b)
    assert not is_done(tmp_path, a)
    mark_done(tmp_path, "train", a, steps=3)
    assert is_done(tmp_path, a) and not is_done(tmp_path, b)
    assert read_marker(tmp_path)["steps"] == 3
    (tmp_path / "stage.json").write_text("{half")
    assert not is_done(tmp_path, a)


def test_resource_fields_do_not_change_the_fingerprint_and_the_rest_do():
    base = load_config(None, [])
    moved = load_config(None, ["synth.engine.num_engines=4", "synth.engine.num_gpus_per_engine=1",
                               "synth.judge.num_actors=3", "synth.output_dir=/elsewhere",
                               "train.cpus_per_worker=4", "train.max_failures=3", "train.output_dir=/x"])
    assert fingerprint(base.synth) == fingerprint(moved.synth)
    assert fingerprint(base.train) == fingerprint(moved.train)
    for changed in ("synth.candidates=2", "synth.judge.margin=0.1", "synth.engine.max_model_len=1024",
                    "train.lr=1e-3", "train.deepspeed.zero_stage=3"):
        section = changed.split(".")[0]
        assert fingerprint(getattr(load_config(None, [changed]), section)) != fingerprint(getattr(base, section))


def test_claim_takes_a_folder_for_one_config(tmp_path):
    import pytest

    from syncse_ray.runtime.stage_marker import ClaimError, claim

    a = load_config(None, ["train.lr=1e-5"]).train
    b = load_config(None, ["train.lr=2e-5"]).train
    out = tmp_path / "train"
    assert claim(out, "training", a, "run_config.json", "train.output_dir") is False
    assert claim(out, "training", a, "run_config.json", "train.output_dir") is False  # resume: same config
    with pytest.raises(ClaimError, match=r"unfinished training run of a different config \(it differs in lr: "
                                         r"1e-05 -> 2e-05\).*train.output_dir"):
        claim(out, "training", b, "run_config.json", "train.output_dir")
    mark_done(out, "train", a)
    assert claim(out, "training", a, "run_config.json", "train.output_dir") is True
    with pytest.raises(ClaimError, match="finished training output of a different config"):
        claim(out, "training", b, "run_config.json", "train.output_dir")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ClaimError, match="is not a training output folder"):
        claim(tmp_path / "other", "training", a, "run_config.json", "train.output_dir")
