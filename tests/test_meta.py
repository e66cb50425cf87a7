"""Every module of the package has its test file, mirrored: src/medtransfer/a/b.py -> tests/a/test_b.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "medtransfer"
# Private helpers tested through their public module.
COVERED_ELSEWHERE = {"data/_phantom_render.py": "data/phantoms.py", "data/_phantom_config.py": "data/phantoms.py"}


def test_every_module_has_a_test_file() -> None:
    missing = []
    for module in sorted(PACKAGE.rglob("*.py")):
        rel = module.relative_to(PACKAGE)
        if rel.name == "__init__.py" or rel.as_posix() in COVERED_ELSEWHERE:
            continue
        test = ROOT / "tests" / rel.parent / f"test_{rel.stem.lstrip('_')}.py"
        if not test.is_file():
            missing.append(f"{rel} -> {test.relative_to(ROOT)}")
    assert not missing, "modules without a test file:\n" + "\n".join(missing)
