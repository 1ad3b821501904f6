"""`syncse data fetch` offline: the real download code reads a local folder shaped like the hub's dataset repos
(`--source`), converts into the data-dir layout, and the project's own readers read the result. Plus the one-line
error every command gives when data is missing. Fast: no network, no Ray, no model."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syncse_ray.cli import app
from syncse_ray.data.datadir import MissingDataError, default_data_dir, fetch_command, user_data_dir
from syncse_ray.data.fetch import DATASETS, WIKI1M_SAMPLE_LINES, Source, fetch, read_manifest, sha256_file
from syncse_ray.data.senteval import STS_YEAR_SUBSETS, load_sts_dev, load_sts_test, read_sick, read_stsb
from syncse_ray.errors import SyncseError
from syncse_ray.train.data import read_training_table, snli_triplets

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ a hub-shaped fake source


def _add(tar: tarfile.TarFile, name: str, text: str, encoding: str = "utf-8") -> None:
    data = text.encode(encoding)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _senteval_tar(path: Path) -> dict[str, int]:
    """SimCSE's senteval.tar in miniature: SentEval's data/downstream below 'downstream/', every STS subset
    (3 pairs, one unscored), STS-B, SICK, the transfer sets, plus members that must never be written."""
    scored: dict[str, int] = {}
    with tarfile.open(path, "w") as tar:
        for year, subsets in STS_YEAR_SUBSETS.items():
            folder = f"downstream/STS/{year}-en-test"
            _add(tar, f"{folder}/00-readme.txt", f"{year} readme\n")
            for i, subset in enumerate(subsets):
                _add(tar, f"{folder}/STS.input.{subset}.txt",
                     "".join(f"{year} {subset} a{j} .\t{year} {subset} b{j} .\n" for j in range(3)))
                _add(tar, f"{folder}/STS.gs.{subset}.txt", f"{i % 5}.5\n\n4.0\n")  # the 2nd pair is unscored
            scored[year] = 2 * len(subsets)
        for split, n in (("train", 4), ("dev", 3), ("test", 5)):
            _add(tar, f"downstream/STS/STSBenchmark/sts-{split}.csv", "".join(
                f"main-captions\tMSRvid\t2012test\t{j:04d}\t{j % 5}.000\ta man {j} .\ta woman {j} .\n"
                for j in range(n)))
        for name, n in (("SICK_train.txt", 6), ("SICK_trial.txt", 3), ("SICK_test_annotated.txt", 4)):
            _add(tar, f"downstream/SICK/{name}", "pair_ID\tsentence_A\tsentence_B\trelatedness_score\t"
                 "entailment_judgment\n" + "".join(f"{j}\tA boy {j}\tA girl {j}\t{1 + j % 4}.5\tNEUTRAL\n"
                                                    for j in range(n)))
        for folder, neg, pos in (("MR", "rt-polarity.neg", "rt-polarity.pos"), ("CR", "custrev.neg", "custrev.pos"),
                                 ("SUBJ", "subj.objective", "subj.subjective"), ("MPQA", "mpqa.neg", "mpqa.pos")):
            _add(tar, f"downstream/{folder}/{neg}", "bad café\nworse\n", "latin-1")
            _add(tar, f"downstream/{folder}/{pos}", "good\nfine\nnice\n", "latin-1")
        for split in ("train", "dev", "test"):
            _add(tar, f"downstream/SST/binary/sentiment-{split}", "a fine film\t1\na dull film\t0\n")
        _add(tar, "downstream/TREC/train_5500.label", "HUM:ind Who is he ?\nLOC:city Where is it ?\n", "latin-1")
        _add(tar, "downstream/TREC/TREC_10.label", "NUM:date When was it ?\n", "latin-1")
        for split in ("train", "test"):
            _add(tar, f"downstream/MRPC/msr_paraphrase_{split}.txt",
                 "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tHe left .\tHe went .\n")
        _add(tar, "downstream/STS/STS12-en-test/._STS.input.MSRpar.txt", "macOS resource fork")
        _add(tar, "../escaped.txt", "outside")
        link = tarfile.TarInfo("downstream/SICK/link.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    return scored


# Two SNLI premises per split: the first has an entailment and a contradiction (a gold triplet), the second a
# neutral and an unlabeled (-1) pair.
SNLI_ROWS = [("Two women are embracing.", "The sisters are hugging.", 0),
             ("Two women are embracing.", "The men are fighting.", 2),
             ("A man sleeps.", "A man dreams.", 1),
             ("A man sleeps.", "Nobody agreed on this one.", -1)]


def _snli_repo(folder: Path) -> None:
    """stanfordnlp/snli as the hub serves it: plain_text/<split>-00000-of-00001.parquet with the ClassLabel
    in the Parquet metadata, and the README's config."""
    from datasets import ClassLabel, Dataset, Features, Value

    features = Features({"premise": Value("string"), "hypothesis": Value("string"),
                         "label": ClassLabel(names=["entailment", "neutral", "contradiction"])})
    (folder / "plain_text").mkdir(parents=True)
    for split in ("train", "validation", "test"):
        rows = [(p + ("" if split != "test" else " (test)"), h, y) for p, h, y in SNLI_ROWS]
        Dataset.from_dict({"premise": [r[0] for r in rows], "hypothesis": [r[1] for r in rows],
                           "label": [r[2] for r in rows]}, features=features) \
            .to_parquet(str(folder / "plain_text" / f"{split}-00000-of-00001.parquet"))
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: plain_text\n  data_files:\n"
                                      + "".join(f"  - split: {s}\n    path: plain_text/{s}-*\n"
                                                for s in ("train", "validation", "test")) + "---\n")


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("hub")
    simcse = root / "princeton-nlp" / "datasets-for-simcse"
    simcse.mkdir(parents=True)
    scored = _senteval_tar(simcse / "senteval.tar")
    (simcse / "wiki1m_for_simcse.txt").write_text("".join(f"Wikipedia sentence {i}.\n" for i in range(12_000)))
    (simcse / "nli_for_simcse.csv").write_text("sent0,sent1,hard_neg\na,b,c\nd,e,f\n")
    _snli_repo(root / "stanfordnlp" / "snli")
    return root, scored


@pytest.fixture()
def hf_cache(tmp_path, monkeypatch):
    """A `Source` for a fake hub folder, its `datasets` cache in tmp_path (never the user's)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return lambda root: Source(root, cache_dir=tmp_path / "hf-cache")


# ------------------------------------------------------------------------------------ conversion, end to end


def test_fetch_writes_the_layout_the_readers_read(hub, hf_cache, tmp_path):
    root, scored = hub
    data = tmp_path / "data"
    results = fetch(data, transfer=True, source=hf_cache(root))
    assert [r.name for r in results] == ["senteval-sts", "senteval-transfer", "snli", "wiki1m-sample"]
    assert all(r.status == "fetched" for r in results)

    # STS / SICK through the evaluation readers: every scored pair, the scores as written.
    tests = load_sts_test(data)
    for year, n in scored.items():
        assert len(tests[year][2]) == n
    assert tests["STS12"][2][:2].tolist() == [0.5, 4.0] and tests["STS12"][0][:2] == ["STS12 MSRpar a0 .",
                                                                                       "STS12 MSRpar a2 ."]
    assert read_stsb(data, "train").gold.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert len(tests["STSBenchmark"][2]) == 5 and len(tests["SICKRelatedness"][2]) == 4
    dev = load_sts_dev(data)
    assert len(dev["stsb_dev"][2]) == 3 and dev["sickr_dev"][2].tolist() == [1.5, 2.5, 3.5]
    assert read_sick(data, "train").s1[0] == "A boy 0"

    # SNLI through the training reader: dev has one gold triplet, labels mapped from the ClassLabel, -1 dropped.
    snli = data / "seeds" / "snli"
    assert (snli / "labels.dev").read_text().splitlines() == ["entailment", "contradiction", "neutral"]
    assert (snli / "s1.dev").read_text().splitlines()[0] == "Two women are embracing."
    triplets = snli_triplets(snli / "labels.dev").to_pylist()
    assert triplets == [{"sent0": "Two women are embracing.", "sent1": "The sisters are hugging.",
                         "hard_neg": "The men are fighting."}]
    assert read_training_table(snli, "supervised", 0).num_rows == 2  # dev + test, one triplet each

    # The synth seed input, through the synth reader.
    from syncse_ray.synth.inputs import iter_input_sentences

    wiki = list(iter_input_sentences(data / "seeds" / "wiki1m_sample.txt", "text"))
    assert len(wiki) == WIKI1M_SAMPLE_LINES and wiki[-1] == f"Wikipedia sentence {WIKI1M_SAMPLE_LINES - 1}."

    # Transfer sets through the transfer reader.
    from syncse_ray.data.senteval import TRANSFER_TASKS, read_transfer

    assert read_transfer(data, "MR").texts["all"][0][0] == "bad café"
    assert {t: len(read_transfer(data, t).files) for t in TRANSFER_TASKS}["MRPC"] == 2

    # Nothing but the layout: no escaped member, no link, no resource fork, no staging folder left.
    assert not (tmp_path / "escaped.txt").exists() and not (data / "escaped.txt").exists()
    assert not (data / "senteval" / "SICK" / "link.txt").exists()
    assert not (data / "senteval" / "STS" / "STS12-en-test" / "._STS.input.MSRpar.txt").exists()
    assert not [p for p in data.iterdir() if p.name.startswith(".")]

    # The manifest: source, licence, counts, a sha256 per file that matches the file.
    manifest = json.loads((data / "manifest.json").read_text())
    sts = manifest["datasets"]["senteval-sts"]
    assert sts["source"]["hub"] == "princeton-nlp/datasets-for-simcse" and "senteval.tar" in sts["source"]["used"]
    assert sts["rows"]["STS13"] == scored["STS13"] and sts["rows"]["SICK-test"] == 4
    assert "CC BY-NC-SA 3.0" in sts["licence"]
    assert manifest["datasets"]["snli"]["rows"] == {"dev": 3, "test": 3}
    assert "untokenized" in manifest["datasets"]["snli"]["text"]
    for entry in manifest["datasets"].values():
        for rel, info in entry["files"].items():
            assert sha256_file(data / rel) == info["sha256"]
    assert "senteval/STS/STS16-en-test/STS.gs.headlines.txt" in sts["files"]


def test_complete_datasets_are_skipped_and_broken_ones_fetched_again(hub, hf_cache, tmp_path):
    root, _ = hub
    data = tmp_path / "data"
    fetch(data, only=["senteval-sts", "wiki1m-sample"], source=hf_cache(root))
    again = fetch(data, only=["senteval-sts", "wiki1m-sample"], source=hf_cache(root))
    assert [r.status for r in again] == ["skipped", "skipped"]
    (data / "seeds" / "wiki1m_sample.txt").write_text("truncated\n")  # a file that no longer matches its sha256
    third = fetch(data, only=["senteval-sts", "wiki1m-sample"], source=hf_cache(root))
    assert [r.status for r in third] == ["skipped", "fetched"]
    assert len((data / "seeds" / "wiki1m_sample.txt").read_text().splitlines()) == WIKI1M_SAMPLE_LINES
    forced = fetch(data, only=["senteval-sts"], force=True, source=hf_cache(root))
    assert forced[0].status == "fetched"


def test_an_interrupted_fetch_leaves_no_half_written_file(hub, hf_cache, tmp_path, monkeypatch):
    root, _ = hub
    data = tmp_path / "data"
    fetch(data, only=["wiki1m-sample"], source=hf_cache(root))
    before = (data / "seeds" / "wiki1m_sample.txt").read_bytes()

    import syncse_ray.data.fetch as fetch_module

    spec = DATASETS["senteval-sts"]

    def dies_half_way(source, revision, out):
        (out / "senteval" / "STS").mkdir(parents=True)
        (out / "senteval" / "STS" / "half.txt").write_text("half")
        raise KeyboardInterrupt("killed while writing senteval-sts")

    monkeypatch.setitem(fetch_module.DATASETS, "senteval-sts", spec.__class__(**{**spec.__dict__,
                                                                                 "write": dies_half_way}))
    with pytest.raises(KeyboardInterrupt, match="killed while writing senteval-sts"):
        fetch(data, only=["senteval-sts"], source=hf_cache(root))
    assert not (data / "senteval").exists() and not [p for p in data.iterdir() if p.name.startswith(".")]
    assert "senteval-sts" not in read_manifest(data)["datasets"]
    assert (data / "seeds" / "wiki1m_sample.txt").read_bytes() == before


def test_the_full_simcse_files_on_request(hub, hf_cache, tmp_path):
    root, _ = hub
    data = tmp_path / "data"
    fetch(data, only=["simcse-nli"], source=hf_cache(root))
    assert read_training_table(data / "nli_for_simcse.csv", "supervised", 0).num_rows == 2


def test_the_cli_fetches_from_a_source_and_names_unknown_datasets(hub, hf_cache, tmp_path):
    root, _ = hub
    result = CliRunner().invoke(app, ["data", "fetch", "--to", str(tmp_path / "d"), "--source", str(root),
                                      "--only", "wiki1m-sample"])
    assert result.exit_code == 0, result.output
    assert "wiki1m-sample" in result.output and "fetched" in result.output
    result = CliRunner().invoke(app, ["data", "fetch", "--to", str(tmp_path / "d"), "--only", "nope"])
    assert result.exit_code == 2 and "unknown dataset nope" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["data", "fetch", "--to", str(tmp_path / "d"), "--source", str(tmp_path / "x")])
    assert result.exit_code == 2 and "is not a folder" in result.output


def test_a_data_dir_syncse_did_not_fill_is_left_as_it_is(data_dir, tmp_path):
    """The shared, read-only copy (CI's SYNCSE_DATA_DIR): every default dataset is present, nothing is written,
    no hub is asked; a dataset with a file missing is not present."""
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*"))
    (tmp_path / "empty-hub").mkdir()
    results = fetch(data_dir, source=Source(tmp_path / "empty-hub"))  # would fail if it were asked
    assert [(r.name, r.status) for r in results] == [("senteval-sts", "present"), ("snli", "present"),
                                                     ("wiki1m-sample", "present")]
    assert sorted(p.relative_to(data_dir) for p in data_dir.rglob("*")) == before
    partial = tmp_path / "partial" / "seeds"
    partial.mkdir(parents=True)
    (partial / "wiki1m_sample.txt").write_text("one sentence\n")
    assert DATASETS["wiki1m-sample"].present(tmp_path / "partial")
    assert not DATASETS["snli"].present(tmp_path / "partial")


# ------------------------------------------------------------------------------------ missing data: one line


def test_default_data_dir_is_the_user_cache(monkeypatch):
    monkeypatch.delenv("SYNCSE_DATA_DIR", raising=False)
    assert default_data_dir() == user_data_dir() == Path.home() / ".cache" / "syncse-ray" / "data"
    assert fetch_command() == fetch_command(user_data_dir()) == "syncse data fetch"
    assert fetch_command("/x/data") == "syncse data fetch --to /x/data"


def _one_line_error(result, path_part: str, command: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, SyncseError), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # one line, however long
    text = result.output.strip()
    assert text.startswith("error:") and path_part in text and f"run: {command}" in text, text


def test_eval_without_data_names_the_file_and_the_command(tmp_path, monkeypatch):
    empty = tmp_path / "nodata"
    result = CliRunner().invoke(app, ["eval", "bundled:all-minilm-l6-v2", "--tasks", "sts:STSBenchmark",
                                      "--data-dir", str(empty), "--out", str(tmp_path / "out")])
    _one_line_error(result, "sts-test.csv", f"syncse data fetch --to {empty}")
    monkeypatch.setenv("SYNCSE_DATA_DIR", str(empty))  # the default data dir: the command needs no --to
    result = CliRunner().invoke(app, ["eval", "bundled:all-minilm-l6-v2", "--tasks", "sts:SICKRelatedness",
                                      "--out", str(tmp_path / "out")])
    _one_line_error(result, "SICK_test_annotated.txt", "syncse data fetch")
    assert "--to" not in result.output


def test_readers_raise_the_missing_data_error(tmp_path):
    with pytest.raises(MissingDataError, match=r"STS12-en-test.*run: syncse data fetch --to"):
        load_sts_test(tmp_path)
    with pytest.raises(MissingDataError, match=r"sts-dev.csv"):
        load_sts_dev(tmp_path)


def test_synth_seed_input_missing_names_the_command(tmp_path):
    from syncse_ray.synth.inputs import iter_input_sentences

    seed = tmp_path / "seeds" / "snli" / "s1.test"
    with pytest.raises(MissingDataError, match=r"synth.input .*s1.test.*run: syncse data fetch --to"):
        list(iter_input_sentences(seed, "text", fmt="text", data_dir=tmp_path))


def test_train_dev_sets_missing_is_the_same_error(tmp_path):
    from syncse_ray.train.trainer import _dev_sets

    with pytest.raises(MissingDataError, match=r"sts-dev.csv.*run: syncse data fetch"):
        _dev_sets(tmp_path, None)


def test_a_missing_data_dir_through_a_subprocess(tmp_path):
    import subprocess
    import sys

    env = {**os.environ, "SYNCSE_DATA_DIR": str(tmp_path / "none"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "syncse_ray.cli", "eval", "bundled:all-minilm-l6-v2",
                           "--tasks", "sts-dev", "--out", str(tmp_path / "out")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "Traceback" not in proc.stderr and "run: syncse data fetch" in err and "sts-dev.csv" in err


def test_senteval_tar_of_the_real_files_gives_the_real_counts_byte_for_byte(data_dir, hf_cache, tmp_path):
    """A senteval.tar made from the real SentEval files (the shared data folder) comes out unchanged, with the
    documented pair counts."""
    root = tmp_path / "hub"
    simcse = root / "princeton-nlp" / "datasets-for-simcse"
    simcse.mkdir(parents=True)
    with tarfile.open(simcse / "senteval.tar", "w") as tar:
        for folder in ("STS", "SICK"):
            tar.add(data_dir / "senteval" / folder, arcname=f"downstream/{folder}")
    out = tmp_path / "data"
    result = fetch(out, only=["senteval-sts"], source=hf_cache(root))[0]
    assert result.rows == {"STS12": 3108, "STS13": 1500, "STS14": 3750, "STS15": 3000, "STS16": 1186,
                           "STSBenchmark-train": 5749, "STSBenchmark-dev": 1500, "STSBenchmark-test": 1379,
                           "SICK-train": 4500, "SICK-dev": 500, "SICK-test": 4927}
    for rel in read_manifest(out)["datasets"]["senteval-sts"]["files"]:
        assert (out / rel).read_bytes() == (data_dir / rel).read_bytes(), rel


def test_hub_mode_pins_the_resolved_revision_and_fails_in_one_line(hub, tmp_path, monkeypatch):
    """The hub code path (no network here): the sha `dataset_info` resolves is passed to every download and
    recorded in the manifest; a connection error is one line, exit code 1, and writes nothing."""
    import types

    import huggingface_hub

    root, _ = hub
    calls = []

    def download(repo_id, filename, *, repo_type=None, revision=None, cache_dir=None):
        calls.append((repo_id, filename, repo_type, revision))
        return str(root / repo_id / filename)

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info",
                        lambda self, repo_id, **kw: types.SimpleNamespace(sha="0123abcd" * 5))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    data = tmp_path / "data"
    fetch(data, only=["wiki1m-sample"])
    assert calls == [("princeton-nlp/datasets-for-simcse", "wiki1m_for_simcse.txt", "dataset", "0123abcd" * 5)]
    source = read_manifest(data)["datasets"]["wiki1m-sample"]["source"]
    assert source["revision"] == "0123abcd" * 5 and source["from"] == "huggingface hub"

    def offline(self, repo_id, **kw):
        raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", offline)
    result = CliRunner().invoke(app, ["data", "fetch", "--to", str(tmp_path / "other"), "--only", "snli"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and "cannot reach the Hugging Face hub for stanfordnlp/snli" in text, text
    assert "Traceback" not in result.output and not (tmp_path / "other").exists()
