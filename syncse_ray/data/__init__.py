"""Data in: the data dir and its one missing-file error (`datadir.py`), `syncse data fetch` (`fetch.py`: hub
datasets -> the data-dir layout) and one reader per input format (`readers.py`: text, JSONL, Parquet, CSV).
No Ray."""
