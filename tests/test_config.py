from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from medtransfer.config import config_hash, from_dict, load, parse_overrides, save
from medtransfer.errors import ConfigError, UnknownNameError


@dataclass(frozen=True)
class Inner:
    lr: float = 0.1


@dataclass(frozen=True)
class Cfg:
    k: int = 20
    name: str = "knn"
    seeds: tuple[int, ...] = (0,)
    size: int | None = None
    inner: Inner = field(default_factory=Inner)
    options: dict = field(default_factory=dict)


def test_precedence_defaults_file_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("k: 5\nseeds: [1, 2]\ninner: {lr: 0.5}\n")
    cfg = load(Cfg, f, ["k=7", "inner.lr=1"])
    assert cfg == Cfg(k=7, seeds=(1, 2), inner=Inner(lr=1.0))


def test_toml_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text('k = 3\nname = "x"\n')
    assert load(Cfg, f) == Cfg(k=3, name="x")


def test_unknown_key_suggests(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="Unknown key 'kk' in Cfg. Did you mean 'k'"):
        from_dict(Cfg, {"kk": 1})


@pytest.mark.parametrize("data, match", [
    ({"k": "five"}, r"'k' parameter of Cfg must be int. Got 'five'"),
    ({"k": True}, r"'k' parameter of Cfg must be int"),
    ({"seeds": 3}, r"'seeds' parameter of Cfg must be a list"),
    ({"inner": {"lr": "x"}}, r"The 'lr' parameter of Cfg.inner must be float"),
])
def test_wrong_type_names_field(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(Cfg, data)


def test_optional_and_int_to_float() -> None:
    assert from_dict(Cfg, {"size": None}).size is None
    assert from_dict(Inner, {"lr": 1}).lr == 1.0


def test_bad_override_form() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["seed"])
    assert parse_overrides(["a.b=[1, 2]", "c=x"]) == {"a": {"b": [1, 2]}, "c": "x"}


def test_hash_stable_and_sensitive(tmp_path: Path) -> None:
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash(Cfg(k=1)) != config_hash(Cfg(k=2))
    save(Cfg(k=4), tmp_path / "c.yaml")
    assert load(Cfg, tmp_path / "c.yaml") == Cfg(k=4)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(Cfg, "/nonexistent/c.yaml")


def test_home_follows_the_environment(monkeypatch, tmp_path):
    from medtransfer.config import home

    monkeypatch.setenv("MEDTRANSFER_HOME", str(tmp_path / "cache"))
    assert home() == tmp_path / "cache"
    monkeypatch.delenv("MEDTRANSFER_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert home() == tmp_path / ".cache" / "medtransfer"


def test_yaml_syntax_errors_name_the_file_line_and_column(tmp_path: Path) -> None:
    from medtransfer.config import read_file

    f = tmp_path / "spec.yaml"
    f.write_text("name: t\nmodels: [a, b\nseeds: [0]\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(repr(str(f)))} is not valid YAML: line 3, column 6: "
                                          r"expected ',' or '\]', but got ':' \(while parsing a flow sequence\)\.$"):
        read_file(f)
    f.write_text("a: 1\n  b: 2\n")
    with pytest.raises(ConfigError, match="line 2, column 4: mapping values are not allowed here"):
        read_file(f)
    with pytest.raises(ConfigError, match=r"Override 'seeds=\[0,': the value is not valid YAML \(line 1, column 4"):
        parse_overrides(["seeds=[0,"])


def test_from_dict_reports_every_bad_key_at_once() -> None:
    from medtransfer.config import from_dict_partial

    @dataclass(frozen=True)
    class Cfg:
        k: int = 1
        name: str = "x"

    with pytest.raises(ConfigError, match=r"^2 problems in Cfg:\n  - The 'k' parameter of Cfg must be int. Got "
                                          r"'a' \(str\) instead.\n  - Unknown key 'nme' in Cfg. Did you mean 'name'"):
        from_dict(Cfg, {"k": "a", "nme": "y"})
    with pytest.raises(UnknownNameError, match="^Unknown key 'nme'"):  # one problem: its own error, as before
        from_dict(Cfg, {"nme": "y"})
    cfg, problems = from_dict_partial(Cfg, {"k": "a", "name": "y"})
    assert cfg == Cfg(name="y") and len(problems) == 1 and "'k' parameter of Cfg must be int" in problems[0]
