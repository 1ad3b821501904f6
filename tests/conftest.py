"""Shared fixtures: data and model paths, one local Ray cluster per test session, free ports.

Markers: `slow` on every test that starts Ray, a vLLM engine, a server or a training run, and on model checks
that take seconds each (exports and reloads, multi-process loss checks); the fast subset (`pytest -m "not
slow"`) stays under two minutes on an AVX2 laptop (README, "Test budget")."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest

from syncse_ray.errors import SyncseError

REPO = Path(__file__).resolve().parents[1]

# pytest-xdist (`-n N`, where cores are to spare): each worker gets a Ray temp dir of its own, so that what one
# worker's clusters write there (sessions, the `ray_current_cluster` address that a bare `ray.init()` joins) never
# meets the other's.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _XDIST_WORKER:
    os.environ["RAY_TMPDIR"] = f"{os.environ.get('RAY_TMPDIR', '/tmp')}/ray-{_XDIST_WORKER}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function returning a free loopback TCP port (for servers, Ray heads, torch.distributed)."""
    return _free_port


def _kill_tree(proc) -> None:
    """SIGKILL a driver `subprocess.Popen` and every process it started (its local Ray cluster, engines,
    workers), by pid."""
    import psutil

    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)


def _run_scenario(script: str, tmp_path: Path, *args: str, timeout: float) -> dict:
    """Run a cluster scenario (`tests/<script>`, its own Ray cluster in its own process) with `tmp_path` and
    `args`; its output goes to tmp_path/scenario.log; returns the JSON of its `RESULT ` line (fails the test with
    the log's end if there is none)."""
    import json
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log = tmp_path / "scenario.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, str(REPO / "tests" / script), str(tmp_path), *args], cwd=REPO,
                                env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        finally:
            _kill_tree(proc)  # whatever its cluster left, if it failed
    out = log.read_text(errors="replace")
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        pytest.fail(f"{script} failed (exit {proc.returncode}); {log}:\n{out[-6000:]}")
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="session")
def run_scenario():
    """A function running a multi-node scenario script in a process of its own (see `_run_scenario`)."""
    return _run_scenario


@pytest.fixture(scope="session")
def kill_tree():
    """A function that SIGKILLs a subprocess and everything it started."""
    return _kill_tree


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real benchmark/seed data (SentEval layout). CI sets SYNCSE_DATA_DIR=../shared/data; elsewhere ../shared/data
    if it exists, else the default data dir that `syncse data fetch` fills."""
    from syncse_ray.data.datadir import user_data_dir

    shared = REPO.parent / "shared" / "data"
    path = Path(os.environ.get("SYNCSE_DATA_DIR") or (shared if shared.is_dir() else user_data_dir()))
    if not (path / "senteval").is_dir():
        pytest.fail(f"benchmark data not found at {path}: run `syncse data fetch` or set SYNCSE_DATA_DIR to the "
                    f"shared data folder")
    return path


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    from syncse_ray.config.root import default_cache_dir

    return default_cache_dir()


@pytest.fixture(scope="session")
def smollm2_path(cache_dir) -> Path:
    from syncse_ray.models.references import resolve_model

    return resolve_model("bundled:smollm2-135m-instruct", cache_dir)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from syncse_ray.models.references import resolve_model

    return resolve_model("bundled:all-minilm-l6-v2")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray cluster for the session. More logical CPUs than cores: actors that each reserve a CPU
    would otherwise starve one another on a 2-core machine."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def minilm_encoder(minilm_path):
    """The bundled MiniLM as an evaluation encoder, memoised by sentence for the whole session (eval tests)."""
    from syncse_ray.models.encoders import CachedEncoder, load_encoder

    return CachedEncoder(load_encoder("bundled:all-minilm-l6-v2", batch_size=64))


QUICKSTART_RUN = REPO / "runs" / "quickstart"
QUICKSTART_CONSOLE = REPO / "runs" / "quickstart.console.txt"  # .ci/run tees README command 1's output here


def _comparable(cfg) -> str:
    """The config as its outputs depend on it: not where the run folder or the model cache is."""
    from syncse_ray.config import dump_config

    return dump_config(cfg.model_copy(update={"run_dir": Path("run"), "cache_dir": Path("cache")}))


@pytest.fixture(scope="session")
def quickstart_run(data_dir, tmp_path_factory) -> tuple[Path, list[str]]:
    """README command 1's run folder and what it printed: `runs/quickstart` and the console output `.ci/run` keeps
    beside it, when that run did every stage with the config as it is now and this data dir; else the quickstart
    runs here once, in a folder of the session's own. Tests read it and copy what they change (it is the user's)."""
    import json
    import subprocess
    import sys

    from syncse_ray.config import load_config

    wanted = load_config(REPO / "configs" / "quickstart.yaml", [f"data_dir={data_dir}"])
    try:
        record = json.loads((QUICKSTART_RUN / "pipeline.json").read_text())["stages"]
        ran = load_config(QUICKSTART_RUN / "config.yaml")
        lines = QUICKSTART_CONSOLE.read_text().splitlines()
        if (_comparable(ran) == _comparable(wanted) and set(record) == {"synth", "train", "eval"}
                and any(line.startswith("report ") for line in lines)
                and all(any(line.startswith(f"{s}: done in") for line in lines) for s in ("synth", "train", "eval"))):
            return QUICKSTART_RUN, lines
    except (OSError, ValueError, KeyError, SyncseError):
        pass
    run_dir = tmp_path_factory.mktemp("quickstart") / "run"
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCSE_VERBOSE", "RAY_ADDRESS")}
    proc = subprocess.run([str(Path(sys.executable).with_name("syncse")), "pipeline", "configs/quickstart.yaml",
                           "--set", f"run_dir={run_dir}", "--set", f"data_dir={data_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    if proc.returncode != 0:
        pytest.fail("the quickstart failed:\n" + "\n".join(lines[-60:]))
    return run_dir, lines


# Modules by their time in CI, longest first (README, "Test budget"). Under xdist (`--dist loadfile`: a module's
# tests and its fixtures stay on one worker) the longest start first, so no worker is left alone with one at the
# end; a run without xdist keeps the files' order.
LONGEST_FIRST = ["test_multinode.py", "test_pipeline_scenario.py", "test_rounds_pipeline.py", "test_synth_pipeline.py",
                 "test_train_run.py", "test_autoscaling.py", "test_synth_endpoint_serve.py", "test_serve_app.py",
                 "test_pooling.py", "test_serve_cli.py", "test_serve_faults.py", "test_models.py"]


def pytest_addoption(parser):
    parser.addoption("--benchmarks", action="store_true",
                     help="also run the tests marked `benchmark`: a benchmark end to end (minutes; not in .ci/run)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--benchmarks"):
        skip = pytest.mark.skip(reason="a benchmark end to end: run with `pytest --benchmarks`")
        for item in items:
            if "benchmark" in item.keywords:
                item.add_marker(skip)
    if _XDIST_WORKER:
        rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
        items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each module keeps its order


# -- the suite's budget (README, "Test budget"): printed at the end of every run, so a CI log shows a regression.
# Seconds on 2 cores, by CPU kind: the fast subset's test time (`-m "not slow"`, run alone), and the wall time of a
# run with slow tests (`.ci/run`: the whole suite), which with set-up (~2 min) and the quickstart (~6 min on AMX
# and Zen 4, ~10 held to AVX2) must fit .ci/run's 30 min on AMX and 45 min on AVX2.
BUDGET_S = {"amx": {"fast": 60, "wall": 20 * 60}, "avx2": {"fast": 120, "wall": 30 * 60}}
_spent: dict[str, float] = {"fast": 0.0, "slow": 0.0}
_started = time.monotonic()


def pytest_runtest_logreport(report):
    kind = "slow" if "slow" in report.keywords else "fast"
    _spent[kind] += report.duration  # setup + call + teardown of each test (on any worker)


def pytest_terminal_summary(terminalreporter, config):
    from syncse_ray.hardware import this_machine

    machine = this_machine()
    kind = "amx" if machine.precision("auto", "cpu") == "bf16" else "avx2"
    budget, cpu = BUDGET_S[kind], machine.describe_cpu()
    if _spent["fast"]:
        over = "  OVER BUDGET" if not _spent["slow"] and _spent["fast"] > budget["fast"] else ""
        terminalreporter.write_line(f"suite budget: fast tests {_spent['fast']:.0f} s of test time (alone: "
                                    f"{budget['fast']} s){over} ({cpu})")
    if _spent["slow"]:
        wall, workers = time.monotonic() - _started, config.getoption("numprocesses", None) or 1
        over = "  OVER BUDGET" if wall > budget["wall"] else ""
        terminalreporter.write_line(f"suite budget: slow tests {_spent['slow']:.0f} s of test time; the run "
                                    f"{wall:.0f} s of wall time on {workers} worker(s), of {budget['wall']} s{over} "
                                    f"({cpu})")
