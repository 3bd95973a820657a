"""The settings' keys as `pulumi config` names them: which exist, which are secret, structured or
merged, and each one's description, accepted values and default (stack_config.py and the settings
reference read them; components/settings.py declares them)."""

from typing import Any, Final, get_origin

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from components.setting_types import Resources, bare_type
from components.settings import Settings

SECRET_SETTINGS: Final = {
    "registryPassword": "Registry password for the node image (set with --secret).",
}


def field_info(key: str) -> tuple[str, str]:
    """(description, accepted) of a setting, by its camelCase key."""
    for name, info in Settings.model_fields.items():
        if info.alias == key or to_camel(name) == key:
            extra = info.json_schema_extra
            accepted = str(extra.get("accepted", "")) if isinstance(extra, dict) else ""
            return info.description or "", accepted
    return "", ""


def _structured_keys() -> dict[str, Any]:
    """Keys whose values are lists, maps or objects, with their bare types."""
    keys = {}
    for name, info in Settings.model_fields.items():
        bare = bare_type(info.annotation)
        if get_origin(bare) in (dict, tuple) or (isinstance(bare, type) and issubclass(bare, BaseModel)):
            keys[info.alias or to_camel(name)] = bare
    return keys


STRUCTURED_KEYS: Final = _structured_keys()
# Container resources: a partial object (`config set --path 'sv2-k8s:nodeResources.limits.memory'`)
# overrides only the amounts it names.
MERGED_KEYS: Final = {key for key, bare in STRUCTURED_KEYS.items() if bare is Resources}
ALL_KEYS: Final = {info.alias or to_camel(n) for n, info in Settings.model_fields.items()} | set(
    SECRET_SETTINGS
)


def field_default(key: str) -> Any:
    for name, info in Settings.model_fields.items():
        if (info.alias or to_camel(name)) == key:
            default = info.get_default(call_default_factory=True)
            return default.model_dump() if isinstance(default, BaseModel) else default
    raise KeyError(key)
