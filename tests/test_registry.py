from __future__ import annotations

import pytest

from medtransfer.errors import ConfigError, UnknownNameError
from medtransfer.registry import Registry, did_you_mean


@pytest.fixture
def reg() -> Registry[int]:
    r: Registry[int] = Registry("model")
    for i, name in enumerate(["resnet18", "resnet50", "moco-v2", "moco-v1"]):
        r.add(name, i)
    return r


def test_get_returns_entry(reg: Registry[int]) -> None:
    assert reg.get("moco-v2") == 2


def test_unknown_name_suggests_close_names(reg: Registry[int]) -> None:
    with pytest.raises(UnknownNameError, match=r"Unknown model 'moco-v3'.*Did you mean 'moco-v2', 'moco-v1'"):
        reg.get("moco-v3")


def test_unknown_name_without_close_match_points_to_list(reg: Registry[int]) -> None:
    with pytest.raises(UnknownNameError, match="medtransfer models list") as e:
        reg.get("zzzzzz")
    assert "Did you mean" not in str(e.value)


def test_substring_fallback() -> None:
    assert "'resnet18'" in did_you_mean("resnet", ["resnet18", "densenet121"])


def test_duplicate_registration_raises(reg: Registry[int]) -> None:
    with pytest.raises(ConfigError, match="already registered"):
        reg.add("resnet18", 9)


def test_names_pattern_and_decorator(reg: Registry[int]) -> None:
    reg.register("moco-cxr")(7)
    assert reg.names("moco*") == ["moco-cxr", "moco-v1", "moco-v2"]
    assert "resnet50" in reg and len(reg) == 5 and list(reg)[0] == "moco-cxr"


def test_lazy_attributes_import_on_first_use_and_cache(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sys

    from medtransfer.registry import lazy_attributes

    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from medtransfer.registry import lazy_attributes\n"
                                     "__getattr__ = lazy_attributes(__name__, {'heavy_fn': 'heavy'})\n")
    (pkg / "heavy.py").write_text("LOADED = True\ndef heavy_fn():\n    return 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazypkg  # type: ignore[import-not-found]

    assert "lazypkg.heavy" not in sys.modules  # importing the package did not load the submodule
    assert lazypkg.heavy_fn() == 42 and "lazypkg.heavy" in sys.modules
    assert "heavy_fn" in vars(lazypkg)  # cached on the package
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        lazypkg.nope  # noqa: B018
    assert callable(lazy_attributes("x", {}))
    for name in ("lazypkg", "lazypkg.heavy"):
        sys.modules.pop(name, None)
