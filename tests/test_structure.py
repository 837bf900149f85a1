"""Architecture rules that a review could miss: the library stays torch-only and UI-free, the
lab never imports streamlit, and the two dependency lists (requirements.txt for the app,
pyproject.toml for the package) agree."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "normcore"
LAB_ONLY = ("pandas", "altair", "streamlit", "sklearn")  # what the library must not pull in


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved), with ``from a
    import b`` counted as both ``a`` and ``a.b`` (b may be a submodule)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def is_within(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


# -- the library and the lab --------------------------------------------------------------


def library_files() -> list[Path]:
    """The library's source: normcore/ without the lab."""
    return sorted(f for f in PACKAGE.rglob("*.py") if "lab" not in f.relative_to(PACKAGE).parts)


def test_the_library_imports_only_torch_and_the_standard_library():
    # Read from the source with ast: at run time torch itself loads numpy, so sys.modules can't tell.
    files = library_files()
    assert {f.name for f in files} >= {"__init__.py", "functional.py", "one_pass.py", "batch_normalization.py"}
    allowed = set(sys.stdlib_module_names) | {"torch", "normcore"}
    offenders = [(module_name(f), m) for f in files for m in imported_modules(f) if m.split(".")[0] not in allowed]
    assert offenders == [], f"the library may import torch and the standard library only: {offenders}"
    lab = [(module_name(f), m) for f in files for m in imported_modules(f) if is_within(m, "normcore.lab")]
    assert lab == []


def test_import_normcore_loads_normcore_keras_only_when_used():
    code = "import sys, normcore; before = 'normcore.keras' in sys.modules; normcore.keras.BatchNormalization; print(before, 'normcore.keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_importing_the_library_loads_no_lab_dependency():
    # Nor Keras: it is a test dependency only (the oracle of tests/test_keras_*.py), never normcore.keras's.
    unwanted = LAB_ONLY + ("keras", "tensorflow")
    code = f"import sys, normcore, normcore.keras; print(' '.join(m for m in {unwanted!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [], f"import normcore, normcore.keras loaded {out.stdout.strip()}"


def test_nothing_under_normcore_imports_streamlit():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20  # the scan does see the package, lab included
    offenders = [(module_name(f), m) for f in files for m in imported_modules(f) if is_within(m, "streamlit")]
    assert offenders == []


def test_nothing_under_normcore_imports_keras_or_tensorflow():
    files = sorted(PACKAGE.rglob("*.py"))
    offenders = [(module_name(f), m) for f in files for m in imported_modules(f) if is_within(m, "keras") or is_within(m, "tensorflow")]
    assert offenders == []
    assert "normcore.keras.batch_normalization" in imported_modules(PACKAGE / "keras" / "__init__.py")  # (the scan sees it)


def test_the_import_scan_resolves_relative_imports():
    # The scan above is only as good as this: `from . import lab` in normcore/ is normcore.lab.
    probe = PACKAGE / "modules.py"
    assert "normcore.checks" in imported_modules(probe) and "normcore.functional" in imported_modules(probe)
    experiments = PACKAGE / "lab" / "experiments" / "train_eval" / "batches.py"
    assert "normcore.lab.limits" in imported_modules(experiments)


def test_the_lab_has_one_import_style():
    """The lab imports by absolute name (``from normcore.lab import limits``), never relatively."""
    relative = [f"{path.relative_to(ROOT)}:{n}" for path in sorted((PACKAGE / "lab").rglob("*.py"))
                for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                if line.lstrip().startswith("from .")]
    assert relative == []


# -- requirements.txt and pyproject.toml ------------------------------------------------------


def requirements_txt() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    reqs = [Requirement(line.split("#")[0]) for line in lines if line.split("#")[0].strip() and not line.startswith("-")]
    return {canonicalize_name(r.name): r for r in reqs}


def pyproject() -> dict[str, Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["lab"]]
    return {canonicalize_name(r.name): r for r in reqs}


def representative_versions(req: Requirement) -> list[Version]:
    """The versions a requirements.txt line stands for: a pin (``==1.67.*`` stands for
    1.67.0), a lower bound, a compatible release."""
    out = []
    for spec in req.specifier:
        if spec.operator in ("==", "===", ">=", "~="):
            out.append(Version(spec.version.removesuffix(".*")))
    return out


def test_requirements_and_pyproject_name_the_same_packages():
    assert set(requirements_txt()) == set(pyproject())


def test_every_requirements_pin_satisfies_the_pyproject_range():
    ranges = pyproject()
    for name, req in requirements_txt().items():
        if name not in ranges:
            continue  # the test above names it
        versions = representative_versions(req)
        assert versions, f"requirements.txt: give {name} a pin or a lower bound"
        for v in versions:
            assert req.specifier.contains(v, prereleases=True), (name, v)  # the version stands for the line
            assert ranges[name].specifier.contains(v, prereleases=True), (
                f"requirements.txt's {req} allows {v}, which pyproject.toml's {ranges[name]} does not")


def test_keras_is_a_test_dependency_only():
    dev = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert any(Requirement(line).name == "keras" for line in dev if line.strip() and not line.startswith(("#", "-")))
    assert "keras" not in requirements_txt() and "keras" not in pyproject()


def test_representative_versions_of_the_forms_in_use():
    assert representative_versions(Requirement("streamlit==1.67.*")) == [Version("1.67.0")]
    assert representative_versions(Requirement("torch==2.13.0")) == [Version("2.13.0")]
    assert representative_versions(Requirement("numpy>=1.26")) == [Version("1.26")]
    assert representative_versions(Requirement("numpy<3")) == []
