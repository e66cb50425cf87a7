"""Frozen dataclass configs: strict YAML/TOML loading, `key=value` overrides, a stable hash.

Precedence is defaults < file < command line (as in dinov2's `get_cfg_from_args`). The resolved config is
saved beside the results and its hash keys the results store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 reads YAML only
    tomllib = None  # type: ignore[assignment]

from medtransfer.errors import ConfigError, UnknownNameError
from medtransfer.registry import did_you_mean

C = TypeVar("C")
DEVICE_ENV = "MEDTRANSFER_DEVICE"  # the device every command computes on (`features.default_device` reads it)


def home() -> Path:
    """medtransfer's cache folder (features, converted models, training checkpoints): $MEDTRANSFER_HOME, default
    ~/.cache/medtransfer."""
    return Path(os.environ.get("MEDTRANSFER_HOME", "~/.cache/medtransfer")).expanduser()


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, owner: str, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting YAML lists to tuples and ints to floats."""
    where = f"{key!r} parameter of {owner}"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, owner, key)
            except ConfigError:
                continue
        raise ConfigError(f"The {where} must be {_type_name(tp)}. Got {value!r} instead.")
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"The {where} must be one of {list(args)}. Got {value!r} instead.")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"The {where} must be a list. Got {value!r} instead.")
        item = args[0] if args else Any
        items = [_coerce(v, item, owner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"The {where} must be a mapping. Got {value!r} instead.")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"The {where} must be a mapping of {tp.__name__} fields. Got {value!r} instead.")
        return from_dict(tp, value, where=f"{owner}.{key}")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool) or not isinstance(value, tp):
        raise ConfigError(f"The {where} must be {_type_name(tp)}. Got {value!r} ({type(value).__name__}) instead.")
    return value


def _fields_of(cls: type[C], data: Mapping[str, Any],
               where: str) -> tuple[dict[str, Any], list[ConfigError | UnknownNameError]]:
    """The valid keys of `data` coerced to `cls`'s field types, and one error per invalid key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    problems: list[ConfigError | UnknownNameError] = []
    for key, value in data.items():
        if key not in fields:
            problems.append(UnknownNameError(f"Unknown key {key!r} in {where}.{did_you_mean(key, list(fields))} "
                                             f"Allowed keys: {', '.join(sorted(fields))}."))
            continue
        try:
            kwargs[key] = _coerce(value, hints[key], where, key)
        except ConfigError as e:
            problems.append(e)
    return kwargs, problems


def from_dict(cls: type[C], data: Mapping[str, Any], *, where: str | None = None) -> C:
    """Build the dataclass `cls` from `data`; unknown keys and wrong types raise naming the field (all of them,
    in one message, when there are several).

    Examples:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class KNN:
        ...     k: int = 20
        >>> from_dict(KNN, {"k": 5})
        KNN(k=5)
    """
    where = where or cls.__name__
    kwargs, problems = _fields_of(cls, data, where)
    if len(problems) == 1:
        raise problems[0]
    if problems:
        kind = UnknownNameError if all(isinstance(p, UnknownNameError) for p in problems) else ConfigError
        raise kind(f"{len(problems)} problems in {where}:\n" + "\n".join(f"  - {p}" for p in problems))
    return cls(**kwargs)


def from_dict_partial(cls: type[C], data: Mapping[str, Any], *, where: str | None = None) -> tuple[C, list[str]]:
    """`cls` built from the valid keys of `data` (the others keep their defaults), and the message of every
    invalid key: a caller that checks more (names, ranges) can then report all problems at once."""
    kwargs, problems = _fields_of(cls, data, where or cls.__name__)
    return cls(**kwargs), [str(p) for p in problems]


def resolve(path: str | Path | None = None, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """The settings of file `path` with `key=value` overrides merged over them (no defaults, no checks)."""
    return _merge(read_file(path) if path is not None else {}, parse_overrides(overrides))


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ["k=5", "head.lr=0.1", "models=[a,b]"] into a nested dict; values are parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"Override {item!r} is not of the form key=value (e.g. seed=1).")
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        try:
            node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"Override {item!r}: the value is not valid YAML ({_yaml_problem(e)}) Lists are "
                              "written [a, b], mappings {k: v}.") from None
    return out


def _yaml_problem(e: yaml.YAMLError) -> str:
    """"line L, column C: <what was wrong> (<while doing what>)" of a PyYAML error, 1-based as editors count."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "") + "."


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or TOML mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file {str(path)!r} does not exist.")
    text = path.read_text()
    if path.suffix == ".toml" and tomllib is None:
        raise ConfigError(f"Reading {str(path)!r} needs Python >= 3.11 (tomllib); write the config as YAML instead.")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{str(path)!r} is not valid YAML: {_yaml_problem(e)}") from None
    except ValueError as e:  # only tomllib raises it (TOMLDecodeError), with the line and column in its message
        raise ConfigError(f"{str(path)!r} is not valid TOML: {e}.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {str(path)!r} must hold a mapping of keys to values, "
                          f"not {type(data).__name__}.")
    return data


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in top.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load(cls: type[C], path: str | Path | None = None, overrides: Iterable[str] = ()) -> C:
    """Resolve a config: dataclass defaults < file `path` < `key=value` overrides."""
    return from_dict(cls, resolve(path, overrides))


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg), default=str))


def config_hash(cfg: Any, *, length: int = 16) -> str:
    """Stable hash of a config (dataclass or mapping): same values, same hash, whatever the key order."""
    data = to_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def save(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML beside the results."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
