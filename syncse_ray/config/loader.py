"""Read YAML into a Config, apply `--set` overrides, turn validation errors into messages naming the key."""

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from syncse_ray.config.root import Config
from syncse_ray.errors import SyncseError

PLACEHOLDERS = ("{data_dir}", "{run_dir}")


class ConfigError(SyncseError, ValueError):
    """A config file or override that cannot be used; the message names the file, key or value."""


def format_validation_error(err: ValidationError, source: str, section: str = "") -> str:
    """Each problem naming its key (``section.key``) and the value given: one line for one problem, else a line
    a problem below the source."""
    problems = []
    for e in err.errors():
        key = ".".join([section] * bool(section) + [str(p) for p in e["loc"]]) or "<root>"
        if e["type"] == "extra_forbidden":
            problems.append(f"{key}: unknown key")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            problems.append(f"{key}: {e['msg']}{shown}")
    if len(problems) == 1:
        return f"invalid config ({source}): {problems[0]}"
    return "\n".join([f"invalid config ({source}):", *(f"  {p}" for p in problems)])


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.lr=1e-5` -> (["train", "lr"], 1e-05). The value is parsed as YAML (numbers, lists, null); what
    YAML cannot parse (`{data_dir}/x.txt`) stays a string, and the section's types still check it."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key.path=value")
    if any(p in raw for p in PLACEHOLDERS):
        return key.strip().split("."), raw
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for item in overrides:
        path, value = parse_override(item)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, got {type(data).__name__}")
    return data


def _substitute(node: Any, values: dict[str, str]) -> Any:
    """Replace {data_dir} and {run_dir} in string values, so recipes can name files portably."""
    if isinstance(node, dict):
        return {k: _substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, values) for v in node]
    if isinstance(node, str) and "{" in node:
        for key, value in values.items():
            node = node.replace("{" + key + "}", value)
    return node


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML config (or the defaults when path is None) and apply `key.path=value` overrides.

    String values may use {data_dir} and {run_dir}: `synth.input: "{data_dir}/seeds/wiki1m_sample.txt"`.
    """
    data = _read_yaml(Path(path)) if path is not None else {}
    data = apply_overrides(data, list(overrides or []))
    fields = Config.model_fields
    values = {"data_dir": str(data.get("data_dir") or fields["data_dir"].get_default(call_default_factory=True)),
              "run_dir": str(data.get("run_dir") or fields["run_dir"].get_default())}
    data = _substitute(data, values)
    source = str(path) if path is not None else "defaults"
    if overrides:
        source += " + --set " + " ".join(overrides)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
