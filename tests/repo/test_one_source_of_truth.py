"""Each value has one source of truth, or a test that its copies agree:

- the params schema's defaults and params.yaml (deleting a key must not change the run);
- every params key a stage reads is in that stage's dvc.yaml `params:` (or a change there
  does not rerun it: issue 24 found evaluate reading `mlflow.registered_model` undeclared);
- the output paths in core/config.py and dvc.yaml's outs, and each stage touches only the
  pipeline files it declares (deps it reads, outs it writes).

Which params a stage reads is found statically: from `params = load_params(...)` in the
stage script, every `params.<section>.<key>` read, following `params` (or a section of it)
into the package functions it is passed to. A use that cannot be followed (a method call,
a value stored away) counts as reading all of it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from cifar10_mlops.core import config
from cifar10_mlops.core.params import Params, flatten, read_params_yaml
from tests.helpers import REPO
from tests.helpers.imports import module_file, stage_script

DVC_YAML = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
STAGES: dict[str, dict] = DVC_YAML["stages"]

# Functions that read every param only to show them, not to act on them: MLflow lists all of
# a run's params, logged once by train (MLflow refuses to change a logged param).
SHOWS_EVERY_PARAM = {("cifar10_mlops.tracking.secrets", "loggable_params")}


# --------------------------------------------------------------------------- schema defaults


def _leaves(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else key
        flat.update(_leaves(value, name) if isinstance(value, dict) else {name: value})
    return flat


def test_params_yaml_writes_every_key_with_the_schemas_default():
    written = _leaves(read_params_yaml(config.PARAMS_FILE))
    defaults = flatten(Params())
    assert sorted(written) == sorted(defaults), "params.yaml and the schema list other keys"
    differ = {
        key: (written[key], defaults[key]) for key in written if written[key] != defaults[key]
    }
    assert not differ, f"params.yaml value vs schema default: {differ}"


# --------------------------------------------------------------------------- params a stage reads


class _Module:
    def __init__(self, name: str, path: Path) -> None:
        self.name, self.tree = name, ast.parse(path.read_text(encoding="utf-8"))
        self.functions = {
            node.name: node
            for node in self.tree.body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self.imported: dict[str, tuple[str, str | None]] = {}  # local name: (module, attr)
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    target = (full, None) if module_file(full) else (node.module, alias.name)
                    self.imported[alias.asname or alias.name] = target
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    self.imported[alias.asname or alias.name] = (alias.name, None)


def _load(module: str) -> _Module | None:
    path = module_file(module)
    return _Module(module, path) if path and module.startswith("cifar10_mlops") else None


def _schema_at(path: str) -> type[BaseModel] | None:
    """The params model at a dotted path ("" is Params), None for a leaf."""
    model: type[BaseModel] = Params
    for part in filter(None, path.split(".")):
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _join(base: str, attr: str) -> str:
    return f"{base}.{attr}" if base else attr


class _ParamsReads:
    """The dotted params keys ("" for all of them) that a function reads from its arguments."""

    def __init__(self) -> None:
        self.read: set[str] = set()
        self.seen: set[tuple[str, str, tuple]] = set()

    def function(self, module: _Module, node: ast.AST, bound: dict[str, str]) -> None:
        key = (module.name, getattr(node, "name", "<script>"), tuple(sorted(bound.items())))
        if key in self.seen:
            return
        self.seen.add(key)
        bound = dict(bound)
        parents = {
            child: parent for parent in ast.walk(node) for child in ast.iter_child_nodes(parent)
        }
        # Aliases first (`cfg = params.train`), in source order: reading cfg.x reads train.x.
        followed: set[ast.AST] = set()
        for stmt in ast.walk(node):
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target, path = stmt.targets[0], self._path(stmt.value, bound)
                if isinstance(target, ast.Name) and path is not None:
                    bound[target.id] = path
                    followed.add(stmt.value)
        for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
            for name, arg in self._bound_arguments(call):
                path = self._path(arg, bound)
                if path is None or _schema_at(path) is None:
                    continue  # not params, or a leaf (read by the attribute walk below)
                followed.add(arg)
                self._follow(module, call.func, name, path)
        for sub in ast.walk(node):
            if sub in followed or isinstance(parents.get(sub), ast.Attribute):
                continue  # a followed argument, or inside a longer attribute chain
            if isinstance(sub, ast.Attribute | ast.Name) and isinstance(sub.ctx, ast.Load):
                path = self._path(sub, bound)
                if path is not None and not (isinstance(sub, ast.Name) and sub.id not in bound):
                    self.read.add(path)

    @staticmethod
    def _bound_arguments(call: ast.Call):
        yield from enumerate(call.args)
        for keyword in call.keywords:
            if keyword.arg:
                yield keyword.arg, keyword.value

    def _path(self, node: ast.AST, bound: dict[str, str]) -> str | None:
        """The params path an expression denotes, down to the deepest field it names."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.insert(0, node.attr)
            node = node.value
        if not (isinstance(node, ast.Name) and node.id in bound):
            return None
        path = bound[node.id]
        for attr in attrs:
            model = _schema_at(path)
            if model is None or attr not in model.model_fields:
                break  # a leaf's or a model's own attribute: the value so far is read
            path = _join(path, attr)
        return path

    def _follow(self, module: _Module, func: ast.AST, arg: int | str, path: str) -> None:
        target = self._resolve(module, func)
        if target is None:
            self.read.add(path)  # cannot follow: all of it counts as read
            return
        callee_module, callee = target
        if (callee_module.name, callee.name) in SHOWS_EVERY_PARAM:
            return
        names = [a.arg for a in callee.args.posonlyargs + callee.args.args + callee.args.kwonlyargs]
        name = names[arg] if isinstance(arg, int) and arg < len(names) else arg
        if name not in names:
            self.read.add(path)
            return
        self.function(callee_module, callee, {name: path})

    @staticmethod
    def _resolve(module: _Module, func: ast.AST):
        if isinstance(func, ast.Name):
            if func.id in module.functions:
                return module, module.functions[func.id]
            origin, attr = module.imported.get(func.id, (None, None))
        elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            origin, attr = module.imported.get(func.value.id, (None, None))
            origin, attr = (origin, func.attr) if attr is None else (None, None)
        else:
            return None
        callee_module = _load(origin) if origin and attr else None
        if callee_module is None or attr not in callee_module.functions:
            return None
        return callee_module, callee_module.functions[attr]


def params_read_by(script: Path) -> set[str]:
    module = _Module("<stage>", script)
    reads = _ParamsReads()
    loaded = {
        node.targets[0].id
        for node in ast.walk(module.tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "load_params"
        and isinstance(node.targets[0], ast.Name)
    }
    for name in loaded:
        reads.function(module, module.tree, {name: ""})
    return reads.read


def _declared(entry: str, read: str) -> bool:
    return read == entry or read.startswith(entry + ".")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_every_params_key_a_stage_reads_is_in_its_params(name):
    stage = STAGES[name]
    declared = [entry for entry in stage.get("params", []) if isinstance(entry, str)]
    undeclared = sorted(
        key or "<all params>"
        for key in params_read_by(stage_script(stage))
        if not any(_declared(entry, key) for entry in declared)
    )
    assert not undeclared, f"dvc.yaml stage {name!r} reads params it does not list: {undeclared}"


def test_the_params_walk_follows_sections_into_the_functions_they_are_passed_to(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text(
        "from cifar10_mlops.tracking.datasets import dataset_name\n"
        "from cifar10_mlops.tracking.naming import summary_name\n"
        "params = load_params(PATH)\n"
        "cfg = params.evaluate\n"
        "print(cfg.tta, params.mlflow.registered_model)\n"
        "summary_name(params, None)\n"
        "dataset_name(params.data, 'test')\n"
        "params.split.model_dump()\n",
        encoding="utf-8",
    )
    assert params_read_by(script) == {
        "evaluate.tta",
        "mlflow.registered_model",
        "model.backbone",
        "train.epochs",
        "data.source",
        "split",
    }


# --------------------------------------------------------------------------- paths


def _relative(path: Path) -> str:
    return str(Path(path).relative_to(config.ROOT))


# The pipeline's files: every path constant in core/config.py under data/, models/, reports/.
CONFIG_PATHS = {
    name: _relative(value)
    for name, value in vars(config).items()
    if name.isupper() and isinstance(value, Path) and value.is_relative_to(config.ROOT)
}


def _outs(stage: dict) -> list[str]:
    entries = [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries]


def test_every_dvc_out_is_a_path_of_core_config():
    outs = {out for stage in STAGES.values() for out in _outs(stage)}
    assert not outs - set(CONFIG_PATHS.values()), "dvc.yaml outs missing from core/config.py"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_a_stage_script_touches_only_the_pipeline_files_it_declares(name):
    stage = STAGES[name]
    tree = ast.parse(stage_script(stage).read_text(encoding="utf-8"))
    used = {
        CONFIG_PATHS[node.attr]
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "config"
        and node.attr in CONFIG_PATHS
    }
    declared = [*_outs(stage), *(d for d in stage.get("deps", []) if isinstance(d, str))]
    pipeline_files = {out for other in STAGES.values() for out in _outs(other)}
    undeclared = sorted(
        path
        for path in used
        # A pipeline file, or a folder holding some (reports/): each one in it must be declared.
        for out in pipeline_files
        if (out == path or _inside(out, path) or _inside(path, out))
        and not any(out == entry or _inside(out, entry) for entry in declared)
    )
    assert not undeclared, (
        f"dvc.yaml stage {name!r} touches undeclared pipeline files: {undeclared}"
    )


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder + "/")
