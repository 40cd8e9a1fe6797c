"""The house drawn from imports: floors in order, no circle, small modules, tools on top.

Floors, lowest first; a module may import from its own floor or a lower one. The package's
``__init__`` and ``deprecated_paths`` (which map the 0.1 names onto every floor) stand
outside the floors.
"""
from __future__ import annotations

import ast
import os
import os.path as osp

from helpers import REPO_ROOT

FLOORS = ['utils', 'data', 'models', 'probes', 'channels', 'identify', 'training', 'evaluation',
          'report', 'readout', 'attack', 'profile', 'api', 'cli']
OUTSIDE = {'posattack', 'posattack.deprecated_paths', 'posattack.__main__', 'posattack.registry'}
MAX_LINES = 450
PACKAGE = osp.join(REPO_ROOT, 'posattack')


def _modules() -> dict[str, str]:
    modules = {}
    for folder, subfolders, files in os.walk(PACKAGE):
        # .mim: the configs setup.py copies in for a wheel (posattack::...), not modules
        subfolders[:] = [d for d in subfolders if not d.startswith('.')]
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                dotted = osp.relpath(path, REPO_ROOT)[:-3].replace(os.sep, '.')
                if dotted.endswith('.__init__'):
                    dotted = dotted[:-len('.__init__')]
                modules[dotted] = path
    return modules


def _imports(module: str, path: str, modules: dict[str, str]) -> set[str]:
    """posattack modules that ``module`` imports, at any depth of its code (late imports too)."""
    package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                source = '.'.join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ''
            targets = [f'{source}.{alias.name}' if f'{source}.{alias.name}' in modules
                       else source for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {module: _imports(module, path, modules) for module, path in modules.items()}


def _floor(module: str) -> int:
    return FLOORS.index(module.split('.')[1])


def test_every_module_lives_on_a_floor():
    stray = [m for m in _graph() if m not in OUTSIDE and m.split('.')[1] not in FLOORS]
    assert not stray, f'modules outside the subpackages: {stray}'


def test_no_import_goes_up_a_floor():
    upward = [f'{m} -> {d}' for m, deps in _graph().items() if m not in OUTSIDE
              for d in deps if d not in OUTSIDE and _floor(d) > _floor(m)]
    assert not upward, 'imports up a floor:\n' + '\n'.join(sorted(upward))
    outside = [f'{m} -> {d}' for m, deps in _graph().items() if m not in OUTSIDE
               for d in deps if d == 'posattack']
    assert not outside, f'modules importing the package root: {outside}'


def test_no_import_circle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module):
        state[module] = 1
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                raise AssertionError('import circle: ' + ' -> '.join(
                    stack[stack.index(dep):] + [dep]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_modules_stay_small():
    long = {m: n for m, p in _modules().items()
            if (n := sum(1 for _ in open(p, encoding='utf-8'))) > MAX_LINES}
    assert not long, f'modules over {MAX_LINES} lines: {long}'


def test_the_library_never_imports_tools():
    for module, path in _modules().items():
        tree = ast.parse(open(path, encoding='utf-8').read())
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names]
        names += [node.module or '' for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        assert not any(name == 'tools' or name.startswith('tools.') for name in names), module
