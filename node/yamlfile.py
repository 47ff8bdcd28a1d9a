"""Reading a YAML file: PyYAML's safe loader, duplicate keys refused.

A module of its own so that only a process that reads a file imports PyYAML
(about 1.5 MB resident): a priest forked with its config already parsed never does.
"""

from __future__ import annotations

from typing import Any

import yaml

from node.errors import ConfigError


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last silently)."""


def _construct_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            # A list or mapping as a key (`? [a, b]`) cannot be a name, nor a dict key.
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain name, not a list or mapping",
                key_node.start_mark)
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen[key] = loader.construct_object(value_node, deep=True)
    return seen


UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def parse_yaml(text: str, path: str) -> object:
    """The document in `text` (read from `path`); ConfigError naming file and line."""
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(path, "", f"not valid YAML{where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(path, "", "not valid YAML: nested too deeply") from None
