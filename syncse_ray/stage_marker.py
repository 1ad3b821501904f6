"""Stage completion markers: `<output_dir>/stage.json` records which config produced a finished output.

The pipeline skips a stage whose marker matches the current config; a stage refuses to write into a folder that
another config produced (rather than overwrite it silently).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel

MARKER = "stage.json"


def fingerprint(settings: BaseModel | dict[str, Any]) -> str:
    """A stable hash of the settings that determine a stage's output."""
    data = settings.model_dump(mode="json") if isinstance(settings, BaseModel) else settings
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


def mark_done(output_dir: Path, stage: str, settings: BaseModel | dict[str, Any], **extra: Any) -> Path:
    """Write the marker atomically (temp file + rename) once the stage's outputs are complete."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = settings.model_dump(mode="json") if isinstance(settings, BaseModel) else settings
    payload = {"stage": stage, "fingerprint": fingerprint(settings), "finished_at": time.time(),
               "settings": data, **extra}
    tmp = output_dir / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, output_dir / MARKER)
    return output_dir / MARKER
