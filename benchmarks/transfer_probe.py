"""The SentEval transfer probe's wall time at several process counts, on one task's real embeddings.

    SYNCSE_DATA_DIR=../shared/data .venv/bin/python benchmarks/transfer_probe.py \\
        [--model bundled:smollm2-135m-instruct] [--pooler avg] [--task CR] [--jobs 2,1] [--max-seconds 900]

Encodes the task's sentences once, then runs `syncse_ray.eval.transfer.probe_accuracy` with each `--jobs` value
(joblib processes) and prints the accuracy and seconds of each: the accuracies must be equal, the seconds say what
the parallel fits buy on this machine. A run past `--max-seconds` is stopped and reported as a lower bound.
"""

from __future__ import annotations

import argparse
import multiprocessing
import queue as queue_module
import time

import psutil


def _probe(feats, labels, n_jobs, queue) -> None:
    from syncse_ray.eval.transfer import probe_accuracy

    started = time.perf_counter()
    accuracy = probe_accuracy(feats, labels, n_jobs=n_jobs)
    queue.put((accuracy, time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bundled:smollm2-135m-instruct")
    parser.add_argument("--pooler", default="avg", help="pooling for a model without its own (the bundled LM)")
    parser.add_argument("--task", default="CR", help="a SentEval transfer task: MR, CR, SUBJ, MPQA, SST2, TREC, MRPC")
    parser.add_argument("--jobs", default="2,1", help="process counts to time, in order")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="per process count")
    args = parser.parse_args()

    from syncse_ray.data.datadir import default_data_dir
    from syncse_ray.data.senteval import read_transfer
    from syncse_ray.eval.transfer import featurize
    from syncse_ray.hardware import this_machine, usable_cores
    from syncse_ray.models.encoders import load_encoder

    data = read_transfer(default_data_dir(), args.task)
    encoder = load_encoder(args.model, pooler=args.pooler)
    started = time.perf_counter()
    feats = featurize(lambda texts: encoder.encode(list(texts)), data)
    dims = next(iter(feats.values())).shape[1]
    examples = sum(len(y) for y in data.labels.values())
    print(f"{this_machine().describe_cpu()}, {usable_cores()} cores; {args.task}: {examples} examples, {dims} "
          f"dimensions, encoded in {time.perf_counter() - started:.1f} s", flush=True)
    spawn = multiprocessing.get_context("spawn")  # each count in a fresh process that can be stopped at the limit
    for n_jobs in (int(j) for j in args.jobs.split(",")):
        queue = spawn.Queue()
        proc = spawn.Process(target=_probe, args=(feats, data.labels, n_jobs, queue))
        proc.start()
        # the probe's own seconds, timed inside the process: a spawned process that used joblib's reusable loky
        # pool can wait out the pool's 300-s idle timeout when it exits, which is not the probe's time
        deadline, result = time.monotonic() + args.max_seconds, None
        while result is None and time.monotonic() < deadline and (proc.is_alive() or not queue.empty()):
            try:
                result = queue.get(timeout=1.0)
            except queue_module.Empty:
                pass
        if result is not None:
            print(f"n_jobs={n_jobs}: {args.task} {result[0]:.2f} in {result[1]:.1f} s", flush=True)
        elif proc.is_alive():
            print(f"n_jobs={n_jobs}: stopped after {args.max_seconds:.0f} s (more than that)", flush=True)
        else:
            print(f"n_jobs={n_jobs}: the probe's process failed (exit code {proc.exitcode})", flush=True)
        # its joblib workers too: orphaned, they would run their fits on (and hold this one's stdout open)
        for child in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
            child.kill()
        proc.join()


if __name__ == "__main__":
    main()
