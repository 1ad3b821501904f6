"""The base class every config section derives from, and which of its fields determine a stage's output."""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from syncse_ray.hardware import normalize_precision

# `auto` (resolved by the machine's capability, syncse_ray.hardware) or fp32 / bf16 / fp16; vLLM's and torch's
# names (bfloat16, float32, half, ...) are read as the same three.
PrecisionSetting = Annotated[str, AfterValidator(normalize_precision)]

# json_schema_extra of a field that changes where or how fast a stage runs, not what it writes.
_RESOURCE = {"output": False}


class Section(BaseModel):
    """A config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def resource(default: Any = ..., **kwargs: Any) -> Any:
    """`pydantic.Field` for a setting that does not change a stage's output (actors, GPUs, folders, restart
    policy): a finished stage is reused, and a half-done one resumed, whatever its value."""
    return Field(default, json_schema_extra=_RESOURCE, **kwargs)


def output_settings(section: BaseModel) -> dict[str, Any]:
    """The section as JSON without its `resource` fields (recursively): what a stage's fingerprint hashes."""
    dumped = section.model_dump(mode="json")
    out = {}
    for name, field in type(section).model_fields.items():
        if field.json_schema_extra == _RESOURCE:
            continue
        value = getattr(section, name)
        out[name] = output_settings(value) if isinstance(value, BaseModel) else dumped[name]
    return out
