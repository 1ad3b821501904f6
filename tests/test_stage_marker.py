from syncse_ray.config import load_config
from syncse_ray.stage_marker import fingerprint, is_done, mark_done, read_marker


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
