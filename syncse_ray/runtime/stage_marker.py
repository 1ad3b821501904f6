"""Stage completion markers: `<output_dir>/stage.json` records which config produced a finished output.

The pipeline skips a stage whose marker matches the current config; a stage refuses to write into a folder that
another config produced (rather than overwrite it silently).
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from syncse_ray.config.base import output_settings
from syncse_ray.errors import SyncseError
from syncse_ray.io import write_json_atomic

MARKER = "stage.json"


class ClaimError(SyncseError, RuntimeError):
    """An output folder that belongs to another config (or to nothing this project wrote)."""


def fingerprint(settings: BaseModel | dict[str, Any]) -> str:
    """A stable hash of the settings that determine a stage's output (a config section: without its
    `resource` fields, see `syncse_ray.config.base.output_settings`)."""
    data = output_settings(settings) if isinstance(settings, BaseModel) else settings
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_marker(output_dir: Path) -> dict[str, Any] | None:
    path = Path(output_dir) / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def is_done(output_dir: Path, settings: BaseModel | dict[str, Any]) -> bool:
    marker = read_marker(output_dir)
    return bool(marker) and marker.get("fingerprint") == fingerprint(settings)


def claim(output_dir: Path, stage: str, settings: BaseModel | dict[str, Any], claim_file: str,
          setting: str) -> bool:
    """Take `output_dir` for this config before a stage writes into it. True when it already holds this
    config's finished output. Raises `ClaimError` when another config finished it or is half-way through it
    (`claim_file` records who is writing), or when it holds something else; `setting` names the config key
    that moves the output elsewhere."""
    output_dir = Path(output_dir)
    fp, data = fingerprint(settings), _json(settings)
    marker = read_marker(output_dir)
    if marker is not None:
        if marker.get("fingerprint") == fp:
            return True
        raise ClaimError(f"{output_dir} holds a finished {stage} output of a different config "
                         f"({_differences(marker.get('settings'), data)}); set {setting} to another folder or "
                         f"remove it")
    owner_file = output_dir / claim_file
    if owner_file.is_file():
        owner = json.loads(owner_file.read_text())
        if owner.get("fingerprint") != fp:
            raise ClaimError(f"{output_dir} holds an unfinished {stage} run of a different config "
                             f"({_differences(owner.get('settings'), data)}); resume it with its own config, or "
                             f"set {setting} to another folder")
    elif output_dir.is_dir() and any(output_dir.iterdir()):
        raise ClaimError(f"{output_dir} exists and is not a {stage} output folder; choose another {setting}")
    write_json_atomic(owner_file, {"fingerprint": fp, "settings": data})
    return False


def _json(settings: BaseModel | dict[str, Any]) -> dict[str, Any]:
    data = output_settings(settings) if isinstance(settings, BaseModel) else settings
    return json.loads(json.dumps(data, default=str))


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    return {k: v for key, value in data.items() for k, v in _flat(value, f"{prefix}{key}.").items()}


def _differences(stored: dict[str, Any] | None, current: dict[str, Any], most: int = 4) -> str:
    """'key: stored -> current' for the settings that differ (the first `most`)."""
    if not isinstance(stored, dict):
        return "its settings were not recorded"
    old, new = _flat(stored), _flat(current)
    keys = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
    shown = ", ".join(f"{k.rstrip('.')}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys[:most])
    return f"it differs in {shown}" + (f" and {len(keys) - most} more" if len(keys) > most else "")


def mark_done(output_dir: Path, stage: str, settings: BaseModel | dict[str, Any], **extra: Any) -> Path:
    """Write the marker atomically (temp file + rename) once the stage's outputs are complete."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {"stage": stage, "fingerprint": fingerprint(settings), "finished_at": time.time(),
               "settings": _json(settings), **extra}
    return write_json_atomic(output_dir / MARKER, payload)
