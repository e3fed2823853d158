"""The codec does not import back into itself through `jaxlic.quant`: what the codec needs from
quant (the integer-graph runtime, the entropy graph's lowering) imports nothing of the codec,
and the codec's own modules hold no integer-mode branches of their own."""

import ast
from pathlib import Path

import jaxlic

PACKAGE = Path(jaxlic.__file__).parent


def _imports(module: str) -> set[str]:
    """jaxlic modules a module imports (at top level or inside functions)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jaxlic"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("jaxlic"))
    return found


def _reachable(start: set[str]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(_imports(module))
    return seen


def test_no_cycle_between_codec_and_quant():
    codec = {f"jaxlic.codec.{p.stem}" for p in (PACKAGE / "codec").glob("*.py") if p.stem != "__init__"}
    used_quant = {m for m in _reachable(codec) if m.startswith("jaxlic.quant")}
    assert used_quant, "the codec runs integer graphs from jaxlic.quant"
    back = {m for m in used_quant if any(i.startswith("jaxlic.codec") for i in _imports(m))}
    assert not back, f"these quant modules import the codec that imports them: {sorted(back)}"


def test_codec_api_is_one_path_for_every_package_kind():
    """compress/decompress go through the decoder protocol: no test of the package kind."""
    tree = ast.parse((PACKAGE / "codec" / "api.py").read_text())
    kind_tests = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "integer"]
    assert not kind_tests, f"api.py branches on package.integer at lines {kind_tests}"
    assert not any(m.startswith("jaxlic.quant") for m in _imports("jaxlic.codec.api"))


def test_one_rule_for_the_medians():
    """Medians are read in one place (`jaxlic.entropy.factorized.bottleneck_medians`); five
    places re-derived them from the quantiles before."""
    readers = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
               if '"quantiles"][:, 0, 1]' in p.read_text()]
    assert readers == ["entropy/factorized.py"]
