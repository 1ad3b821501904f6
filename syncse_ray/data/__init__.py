"""Benchmark and seed data: the data dir and its one missing-file error (`datadir.py`) and `syncse data fetch`
(`fetch.py`: hub datasets -> the data-dir layout). The readers of each input format are in `syncse_ray.io`.
No Ray."""
