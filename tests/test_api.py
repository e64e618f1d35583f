"""The public API: one import path per name, the published signatures, and the 0.1 paths that forward."""

import importlib
import inspect
import json
import pkgutil
import re
from pathlib import Path

import pytest

import utils
from utils import _moved

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_MODULES = sorted(
    m.name for m in pkgutil.iter_modules(utils.__path__, "utils.") if not m.name.split(".")[-1].startswith("_")
)


def _exports(module_name):
    module = importlib.import_module(module_name)
    declared = getattr(module, "__all__", None)
    out = {}
    for name in declared or [n for n in vars(module) if not n.startswith("_")]:
        obj = getattr(module, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        home = obj.__module__
        # without __all__, a module's public names are what it defines (the rest are imports for its own use)
        if declared or home == module_name or home.startswith(module_name + "._"):
            out[name] = obj
    return out


def test_every_public_name_has_exactly_one_import_path():
    seen = {}
    for module_name in PUBLIC_MODULES:
        for name, obj in _exports(module_name).items():
            if inspect.isfunction(obj) or inspect.isclass(obj):
                key = id(obj)
                assert key not in seen, f"{name} is public in both {seen[key]} and {module_name}"
                seen[key] = module_name


def test_the_map_in_the_package_docstring_lists_every_public_module():
    listed = set(re.findall(r"``(\w+)``", utils.__doc__))
    missing = {m.split(".")[1] for m in PUBLIC_MODULES} - listed
    assert not missing, f"modules missing from the map in utils/__init__.py: {sorted(missing)}"


def _imports_in(source):
    return re.findall(r"^\s*from (utils[\w.]*) import", source, flags=re.M)


def test_notebooks_import_only_public_paths():
    for nb in sorted(ROOT.glob("book/**/*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        for path in _imports_in(code):
            assert path in PUBLIC_MODULES, f"{nb.name} imports from {path}, not a public module"
            assert path not in _moved.REMOVED_MODULES


@pytest.mark.parametrize("old_module, name", [(m, n) for m, names in _moved.MOVED.items() for n in names])
def test_every_0_1_path_forwards_with_a_warning(old_module, name):
    module = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=rf"{re.escape(old_module)}\.{name} moved to utils\."):
        obj = getattr(module, name)
    assert obj is not None


def test_an_unknown_name_on_an_old_path_is_an_attribute_error():
    import utils.memory as old

    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        old.no_such_name  # noqa: B018


def test_the_0_1_classes_keep_their_defaults():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from utils.kvcache import CausalSelfAttention, DecoderBlock
        from utils.memory import TransformerBlock as OldBlock
    assert CausalSelfAttention(8, 2).mask_kind == "causal" and CausalSelfAttention(8, 2).impl == "naive"
    assert DecoderBlock(8, 2, 16).attn.causal and DecoderBlock(8, 2, 16).attn.impl == "naive"
    assert OldBlock(8, 2, 16).attn.impl == "naive" and not OldBlock(8, 2, 16).attn.causal


# The names and positional orders that earlier versions published (students call them from their own notebooks).
PUBLISHED = {
    "utils.receptive.receptive_field": ["kernel_size", "layers", "dilations"],
    "utils.receptive.layers_to_connect": ["distance", "kernel_size", "causal"],
    "utils.measure.reachability": ["fn", "n", "d_model"],
    "utils.measure.count_flops": ["module_or_fn"],
    "utils.measure.peak_memory": ["fn", "device"],
    "utils.measure.gradient_norms_vs_distance": ["model", "x"],
    "utils.complexity.attention_weights_bytes": ["batch", "heads", "n", "bytes_per_element"],
    "utils.complexity.max_seq_len": ["memory_budget_bytes", "batch", "heads", "bytes_per_element", "overhead"],
    "utils.complexity.kv_cache_bytes": ["batch", "heads", "n", "head_dim", "layers", "bytes_per_element"],
    "utils.positional.sinusoidal": ["n", "d"],
    "utils.tasks.copy_task": None,
    "utils.tasks.bracket_task": None,
    "utils.models.make_model": ["family", "vocab_size", "num_classes", "d_model"],
    "utils.train.fit": None,
}


@pytest.mark.parametrize("path", sorted(PUBLISHED))
def test_published_signatures_keep_their_positional_order(path):
    module, _, name = path.rpartition(".")
    fn = getattr(importlib.import_module(module), name)
    expected = PUBLISHED[path]
    if expected is None:
        return
    positional = [p.name for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert positional[:len(expected)] == expected


def test_byte_counts_default_to_two_bytes_per_element():
    from utils import complexity

    for name in complexity.__all__:
        fn = getattr(complexity, name)
        if callable(fn) and not inspect.isclass(fn) and "bytes_per_element" in inspect.signature(fn).parameters:
            default = inspect.signature(fn).parameters["bytes_per_element"].default
            assert default == 2, f"utils.complexity.{name} defaults to bytes_per_element={default}"
