"""The house drawn from imports and folders: floors in order, no circle, small modules, tools
on top in folders by purpose, tests mirroring the package and tools. A failure names each
misplaced file and where it goes.

Floors, lowest first; a module may import from its own floor or a lower one. The package's
``__init__`` stands outside the floors.
"""
from __future__ import annotations

import ast
import os
import os.path as osp

from helpers import REPO_ROOT

FLOORS = ['utils', 'data', 'models', 'probes', 'channels', 'identify', 'training', 'evaluation',
          'report', 'readout', 'attack', 'profile', 'api', 'cli']
OUTSIDE = {'posattack', 'posattack.__main__', 'posattack.registry'}
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


# ----------------------------------------------------------------------------- tools/
# tools/ as mmseg lays it out: the everyday commands and dist_*.sh launchers at the top, the
# rest in folders by purpose. A new tool's place, by what it does:
TOOL_FOLDERS = {
    'analysis_tools': 'a benchmark, a comparison or any analysis of results or rankings',
    'dataset_converters': 'a tool that makes or converts a data set',
    'model_converters': 'a tool that converts a checkpoint',
    'tables': 'a table writer or a part of the measured-tables plan (tools/tables/parts_*.py; '
              'register a new part in tools/tables/pipeline.py PARTS)',
    'misc': 'environment set-up and development tools (mutation testing)',
}
TOP_TOOLS = {'attack.py', 'identify.py', 'depth_profile.py', 'consistency.py', 'train.py',
             'probe.py', 'position_readout.py', 'dist_attack.sh'}
# Shell only for launchers: dist_*.sh, the environment's set-up, mutmut's run.
SHELL_TOOLS = {'dist_attack.sh', 'misc/setup_env.sh', 'misc/run_mutation.sh'}
MAX_TOOL_LINES = 300
TOOLS = osp.join(REPO_ROOT, 'tools')


def _tool_files() -> list[str]:
    """Paths under tools/, relative to it."""
    return sorted(osp.relpath(osp.join(folder, name), TOOLS)
                  for folder, dirs, files in os.walk(TOOLS) if '__pycache__' not in folder
                  for name in files if not name.endswith('.pyc'))


def _where_a_tool_goes(name: str) -> str:
    """The folder a misplaced tools/<name> belongs in, said as the fix."""
    stem = osp.splitext(osp.basename(name))[0]
    if name.endswith('.sh') and not stem.startswith('dist_'):
        return ('rewrite it as a part of the Python plan: a function in tools/tables/parts_*.py '
                'registered in tools/tables/pipeline.py PARTS (shell only for launchers)')
    if stem.startswith(('benchmark', 'compare', 'analy')):
        folder = 'analysis_tools'
    elif stem.endswith(('_table', '_tables', '_md')) or stem.startswith(('run_', 'table')):
        folder = 'tables'
    elif stem.startswith(('make_', 'convert_')) and 'checkpoint' not in stem:
        folder = 'dataset_converters'
    elif 'checkpoint' in stem:
        folder = 'model_converters'
    else:
        return ('move it to the folder of its purpose: ' + '; '.join(
            f'tools/{f}/ for {why}' for f, why in TOOL_FOLDERS.items()) + (
            '; or, if it is an everyday command, add it to TOP_TOOLS in this test'))
    return f'move it to tools/{folder}/{osp.basename(name)} ({TOOL_FOLDERS[folder]})'


def test_tools_are_in_folders_by_purpose():
    misplaced = []
    for name in _tool_files():
        folder = name.split(os.sep)[0] if os.sep in name else ''
        if folder == '' and name not in TOP_TOOLS:
            misplaced.append(f'tools/{name}: {_where_a_tool_goes(name)}')
        elif folder and folder not in TOOL_FOLDERS:
            misplaced.append(f'tools/{name}: tools/{folder}/ is not a folder of the house; '
                             + _where_a_tool_goes(name))
        elif name.endswith('.sh') and name not in SHELL_TOOLS:
            misplaced.append(f'tools/{name}: {_where_a_tool_goes(name)}')
    assert not misplaced, 'tools out of place:\n' + '\n'.join(misplaced)


def test_tools_stay_small_and_never_patch_sys_path():
    problems = []
    for name in _tool_files():
        if not name.endswith('.py'):
            continue
        text = open(osp.join(TOOLS, name), encoding='utf-8').read()
        if (lines := text.count('\n')) > MAX_TOOL_LINES:
            problems.append(f'tools/{name}: {lines} lines (at most {MAX_TOOL_LINES}); move '
                            'logic into the package, or a helper module beside the tool')
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, ast.Attribute) and node.attr == 'path'
                    and isinstance(node.value, ast.Name) and node.value.id == 'sys'):
                problems.append(f'tools/{name}: touches sys.path (line {node.lineno}); tools '
                                'import posattack as installed (pip install -e .) and the '
                                'modules beside them by name')
    assert not problems, '\n'.join(problems)


# ----------------------------------------------------------------------------- tests/
# tests/ mirrors the package and tools: tests/test_<subpackage>/ for posattack/<subpackage>/,
# tests/test_tools/ for tools/<tool>.py, tests/test_tools/test_<folder>/ for tools/<folder>/.
# Shared code lives in tests/helpers/ (a package) and tests/conftest.py (fixtures).
TESTS = osp.join(REPO_ROOT, 'tests')
TOP_TESTS = {'test_architecture.py'}


def _test_folders() -> set[str]:
    folders = {f'test_{floor}' for floor in FLOORS} | {'test_tools'}
    return folders | {f'test_tools/test_{folder}' for folder in TOOL_FOLDERS}


def _where_a_test_goes(path: str) -> str:
    """The folder a misplaced test file belongs in: the tool it runs, else the subpackage
    it imports most."""
    text = open(path, encoding='utf-8').read()
    name = osp.basename(path)
    for tool in _tool_files():
        stem = osp.splitext(osp.basename(tool))[0]
        if tool.endswith('.py') and (f"load_tool('{stem}')" in text
                                     or f'tools/{tool}' in text.split('\n\n')[0]):
            folder = osp.dirname(tool)
            return 'tests/test_tools/' + (f'test_{folder}/' if folder else '') + name
    counts = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and (node.module or '').startswith('posattack.'):
            floor = node.module.split('.')[1]
            counts[floor] = counts.get(floor, 0) + 1
    if not counts:
        return 'the tests/test_<subpackage>/ of the code it tests'
    floor = max(sorted(counts, key=FLOORS.index, reverse=True), key=counts.get)
    return f'tests/test_{floor}/{name}'


def test_tests_mirror_the_package_and_tools():
    folders = _test_folders()
    misplaced = []
    for folder, dirs, files in os.walk(TESTS):
        relative = osp.relpath(folder, TESTS).replace(os.sep, '/')
        if relative.split('/')[0] in ('helpers', '__pycache__') or '__pycache__' in relative:
            continue
        for name in files:
            if not (name.startswith('test_') and name.endswith('.py')):
                if name.endswith('.py') and name != 'conftest.py':
                    misplaced.append(f'tests/{relative}/{name}: support code goes in '
                                     'tests/helpers/ (imported as helpers.<module>)')
                continue
            if relative == '.' and name in TOP_TESTS:
                continue
            if relative not in folders:
                path = osp.join(folder, name)
                misplaced.append(f'tests/{relative}/{name}'.replace('/./', '/')
                                 + f': move it to {_where_a_test_goes(path)}')
    assert not misplaced, 'tests out of place:\n' + '\n'.join(misplaced)


def test_test_file_names_are_unique():
    """pytest imports test files by base name (rootdir mode): two of a name would clash."""
    seen: dict[str, str] = {}
    clashes = []
    for folder, _, files in os.walk(TESTS):
        for name in files:
            if name.startswith('test_') and name.endswith('.py'):
                relative = osp.relpath(osp.join(folder, name), REPO_ROOT)
                if name in seen:
                    clashes.append(f'{relative} and {seen[name]}: rename one')
                seen[name] = relative
    assert not clashes, '\n'.join(clashes)


def test_no_test_module_imports_another():
    """Test files share code through tests/helpers and tests/conftest.py only."""
    modules = {name[:-3] for _, _, files in os.walk(TESTS) for name in files
               if name.startswith('test_') and name.endswith('.py')}
    found = []
    for folder, _, files in os.walk(TESTS):
        for name in files:
            if not name.endswith('.py'):
                continue
            tree = ast.parse(open(osp.join(folder, name), encoding='utf-8').read())
            for node in ast.walk(tree):
                targets = ([a.name for a in node.names] if isinstance(node, ast.Import)
                           else [node.module or ''] if isinstance(node, ast.ImportFrom) else [])
                found += [f'{osp.relpath(osp.join(folder, name), REPO_ROOT)} imports {t}: '
                          'move what it shares into tests/helpers/' for t in targets
                          if t.split('.')[0] in modules]
    assert not found, '\n'.join(found)


def test_no_module_imports_a_private_name_from_another():
    """A name with a leading underscore stays inside its module: what another module needs is
    public (the helpers JSON/hashing of utils.fileio included)."""
    modules = _modules()
    private = []
    for module, path in modules.items():
        package = module if path.endswith('__init__.py') else module.rpartition('.')[0]
        for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package.split('.')[:len(package.split('.')) - node.level + 1]
                source = '.'.join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ''
            private += [f'{module} imports {alias.name} from {source}: make it public there'
                        for alias in node.names if source.startswith('posattack')
                        and alias.name.startswith('_') and not alias.name.startswith('__')]
    assert not private, '\n'.join(private)
