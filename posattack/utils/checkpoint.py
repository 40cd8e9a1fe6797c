"""Safe loading of MMEngine / MMSegmentation checkpoints under torch >= 2.6.

torch.load now defaults to ``weights_only=True``: it refuses any pickled global that is
not on an allowlist, so checkpoints saved by MMEngine's Runner (which hold a
HistoryBuffer and numpy arrays in their message hub) no longer load, neither through
``mmseg.apis.init_model`` nor through the Runner's ``load_from``/``resume``. The fix that
keeps the safety is to allowlist exactly the harmless globals those checkpoints hold;
:func:`register_safe_globals` does that (``import posattack`` calls it), and
:func:`load_checkpoint` turns every failure into an error that names the file, the
offending global and the explicit opt-in for trusted files.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import os
import pickle
import re
from collections.abc import Mapping
from typing import Any, Callable, Union

import torch

__all__ = [
    'CheckpointError', 'CheckpointSecurityError', 'load_checkpoint', 'register_mmengine_loader',
    'register_safe_globals', 'safe_checkpoint_globals'
]

PathLike = Union[str, os.PathLike]
SafeGlobal = Union[Callable, tuple]

TRUST_HINT = ('If you trust where this file came from, load it unsafely with '
              '`load_checkpoint(path, trust_checkpoint=True)` (or `--trust-checkpoint` '
              'on the posattack tools), which calls torch.load(weights_only=False).')


class CheckpointError(RuntimeError):
    """A checkpoint file could not be loaded (missing, corrupt, unexpected content)."""


class CheckpointSecurityError(CheckpointError):
    """A checkpoint needs pickled globals outside the allowlist of safe contents.

    Attributes:
        path: the checkpoint file.
        offending_globals: dotted names of the globals that were refused.
    """

    def __init__(self, message: str, path: str = '', offending_globals: tuple = ()):
        super().__init__(message)
        self.path = path
        self.offending_globals = list(offending_globals)


def _numpy_safe_globals() -> list[SafeGlobal]:
    """numpy pieces that pickled arrays, dtypes and scalars reference.

    numpy 2 renamed ``numpy.core`` to ``numpy._core``; a pickle names whichever module
    the writer had, so both dotted names are registered for the same function.
    """
    import numpy as np
    try:
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:  # numpy < 2
        multiarray = importlib.import_module('numpy.core.multiarray')
    entries: list[SafeGlobal] = [np.ndarray, np.dtype]
    # _reconstruct rebuilds ndarrays, scalar rebuilds numpy scalars (np.float64 metric
    # values in the message hub); both only interpret bytes and already-unpickled objects.
    for func_name in ('_reconstruct', 'scalar'):
        func = getattr(multiarray, func_name)
        for module_name in ('numpy.core.multiarray', 'numpy._core.multiarray'):
            entries.append((func, f'{module_name}.{func_name}'))
    # The dtype classes (numpy.dtypes.Float64DType and kin) are enumerated rather than
    # listed so that every dtype a numpy array may carry is covered.
    dtype_classes = set()
    try:
        numpy_dtypes = importlib.import_module('numpy.dtypes')
        dtype_classes.update(
            obj for obj in vars(numpy_dtypes).values()
            if inspect.isclass(obj) and issubclass(obj, np.dtype))
    except ImportError:  # numpy < 1.25 has no numpy.dtypes module
        pass
    for scalar_type in set(np.sctypeDict.values()):
        dtype_classes.add(type(np.dtype(scalar_type)))
    dtype_classes.discard(np.dtype)
    entries.extend(sorted(dtype_classes, key=lambda cls: cls.__qualname__))
    return entries


def _history_buffer_methods() -> dict[str, Callable]:
    from mmengine.logging.history_buffer import HistoryBuffer
    return {name: getattr(HistoryBuffer, name) for name in ('min', 'max', 'current', 'mean')}


def _history_buffer_getattr(owner: Any, name: str) -> Callable:
    """The only ``getattr`` a checkpoint may call: HistoryBuffer's own statistics methods.

    A HistoryBuffer pickles its ``statistics_methods`` dict, and pickle protocol 2 (what
    torch.save writes) stores a method such as ``HistoryBuffer.min`` as
    ``getattr(HistoryBuffer, 'min')``. Allowlisting the real ``builtins.getattr`` would
    let a pickle walk from any allowed object to ``os.system``; this stand-in, registered
    under the name ``builtins.getattr``, resolves those four methods and nothing else.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    methods = _history_buffer_methods()
    if owner is HistoryBuffer and name in methods:
        return methods[name]
    raise pickle.UnpicklingError(
        f'posattack allows getattr only for HistoryBuffer statistics methods, got '
        f'getattr({getattr(owner, "__qualname__", type(owner).__qualname__)}, {name!r})')


def _mmengine_safe_globals() -> list[SafeGlobal]:
    """MMEngine pieces found in checkpoints saved by its Runner (message hub scalars)."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr'),
            *_history_buffer_methods().values()]


@functools.lru_cache(maxsize=1)
def safe_checkpoint_globals() -> tuple[SafeGlobal, ...]:
    """Everything posattack adds to torch's weights_only allowlist.

    Example:
        >>> names = [g[1] if isinstance(g, tuple) else g.__qualname__
        ...          for g in safe_checkpoint_globals()]
        >>> 'HistoryBuffer' in names
        True
    """
    return tuple(_mmengine_safe_globals() + _numpy_safe_globals())


def register_safe_globals() -> None:
    """Allowlist the globals of MMEngine/MMSeg checkpoints for ``torch.load(weights_only=True)``.

    Idempotent (torch keeps a set). After it, plain ``torch.load``, mmseg's ``init_model``
    and the Runner's ``load_from``/``resume`` read Runner checkpoints safely.

    Example:
        >>> register_safe_globals()
        >>> ckpt = torch.load('work_dirs/demo/iter_600.pth')  # weights_only by default
    """
    torch.serialization.add_safe_globals(list(safe_checkpoint_globals()))


_GLOBAL_PATTERNS = (
    re.compile(r'GLOBAL (\S+) was not an allowed global'),
    re.compile(r'unsupported GLOBAL (\S+) whose module'),
    re.compile(r"allowlisted via `add_safe_globals`,? but got <class '([^']+)'>"),
    re.compile(r'unrecognized function (.+?)(?: which belongs|\n|$)'),
    re.compile(r'got (getattr\(.+?\))'),
)


def _globals_named_in_error(message: str) -> list[str]:
    """Offending globals that torch's weights_only unpickler names in its error."""
    found = []
    for pattern in _GLOBAL_PATTERNS:
        for name in pattern.findall(message):
            name = name.strip()
            if name.startswith('getattr(') or ('.' not in name and not name.startswith('<')):
                name = f'builtins.{name}'  # torch strips the 'builtins.' prefix
            found.append(name)
    return found


def _globals_found_by_scan(path: str) -> list[str]:
    """All non-allowlisted globals in a zip checkpoint, read statically (nothing runs)."""
    try:
        return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # legacy (non-zip) or unreadable file: the error message must do
        return []


def _allowed_names() -> set[str]:
    """Dotted names torch's weights-only unpickler accepts (its own and the allowlist)."""
    names = set()
    try:  # private, but the only list of what torch allows by default
        from torch._weights_only_unpickler import _get_allowed_globals
        names.update(_get_allowed_globals())
    except Exception:
        pass
    for item in list(torch.serialization.get_safe_globals()):
        item = item[0] if isinstance(item, tuple) else item
        names.add(f'{getattr(item, "__module__", "")}.{getattr(item, "__qualname__", "")}')
    return names


def _globals_in_plain_pickle(path: str, limit: int = 1 << 26) -> list[str]:
    """The globals a non-zip pickle (a legacy torch.save, or pickle.dump) names, read with
    pickletools (nothing runs); torch's own scan reads zip checkpoints only, so a plain
    pickle calling ``os.system`` was reported as merely corrupt."""
    import io
    import pickletools
    try:
        with open(path, 'rb') as handle:
            data = handle.read(limit)
    except OSError:
        return []
    if data[:2] == b'PK':
        return []
    found, strings, stream = [], [], io.BytesIO(data)
    try:
        while stream.tell() < len(data):  # a legacy file is several pickles in a row
            for opcode, arg, _ in pickletools.genops(stream):
                if opcode.name == 'GLOBAL' and isinstance(arg, str):
                    found.append(arg.replace(' ', '.'))
                elif opcode.name == 'STACK_GLOBAL' and len(strings) >= 2:
                    found.append(f'{strings[-2]}.{strings[-1]}')
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # raw tensor bytes follow the pickles in a legacy file
        pass
    allowed = _allowed_names()
    return [name for name in found if name not in allowed]


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _check_readable_file(path: str) -> None:
    if re.match(r'^[a-z][a-z0-9+.-]*://', path):
        raise CheckpointError(
            f"Checkpoint '{path}' is a URL; posattack loads local files only. "
            'Download it first (e.g. `wget URL`) and pass the local path.')
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"Checkpoint file not found: '{path}'. Check the path (it is resolved "
            f"relative to the current directory '{os.getcwd()}').")
    if not os.path.isfile(path):
        raise CheckpointError(f"Checkpoint path '{path}' is not a file.")
    if not os.access(path, os.R_OK):
        raise CheckpointError(
            f"Checkpoint file '{path}' is not readable (permission denied).")


def _security_error(path: str, message: str) -> CheckpointSecurityError | None:
    """The security error for a weights_only refusal, or None when no global is to blame."""
    offending = _unique(_globals_named_in_error(message) + _globals_found_by_scan(path)
                        or _globals_in_plain_pickle(path))
    if not offending:
        return None
    shown = ', '.join(f"'{name}'" for name in offending[:8])
    if len(offending) > 8:
        shown += f' and {len(offending) - 8} more'
    return CheckpointSecurityError(
        f"Refusing to load checkpoint '{path}': it needs the pickled global(s) {shown}, "
        'which are not on the allowlist of safe checkpoint contents (tensors, numpy '
        'arrays, MMEngine HistoryBuffer and its statistics methods). Unpickling unknown '
        f'globals can run arbitrary code. {TRUST_HINT}',
        path=path,
        offending_globals=offending)


def load_checkpoint(path: PathLike,
                    map_location: Any = 'cpu',
                    trust_checkpoint: bool = False) -> dict:
    """Load a checkpoint dict with ``weights_only=True`` and posattack's allowlist.

    Reads Runner checkpoints (state_dict, meta, message_hub, optimizer,
    param_schedulers), mmseg model-zoo files (state_dict + meta) and bare state dicts.
    A file that needs any other pickled global raises :class:`CheckpointSecurityError`
    unless ``trust_checkpoint=True`` (then torch.load runs with weights_only=False).

    Example:
        >>> ckpt = load_checkpoint('work_dirs/demo/iter_600.pth')
        >>> ckpt['state_dict']['decode_head.conv_seg.weight'].shape
        torch.Size([19, 64, 1, 1])
    """
    path = os.path.expanduser(os.fspath(path))
    _check_readable_file(path)
    register_safe_globals()
    try:
        checkpoint = torch.load(
            path, map_location=map_location, weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as error:
        if not trust_checkpoint:
            security_error = _security_error(path, str(error))
            if security_error is not None:
                raise security_error from None
        raise CheckpointError(
            f"Checkpoint '{path}' could not be unpickled: it is corrupt, truncated or "
            f'not a PyTorch checkpoint. torch said: {error}'
            + ('' if trust_checkpoint else f'\n{TRUST_HINT}')) from error
    except Exception as error:  # zip/EOF/key errors: the file is not a torch.save file
        raise CheckpointError(
            f"Checkpoint '{path}' could not be read: it is corrupt, truncated or not a "
            f'PyTorch checkpoint ({type(error).__name__}: {error}).') from error
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"Checkpoint '{path}' holds a {type(checkpoint).__name__}, expected a dict "
            "(a state dict, or a dict with 'state_dict'). Save weights with "
            'torch.save(model.state_dict(), path).')
    return checkpoint


def register_mmengine_loader(trust_checkpoint: bool = False) -> None:
    """Read the local checkpoints of MMEngine's Runner (a config's ``load_from``, ``resume``,
    a backbone's ``init_cfg``) through :func:`load_checkpoint`.

    mmengine's own local loader calls plain ``torch.load``: a checkpoint whose pickle calls
    ``os.system`` reached through ``load_from`` failed with torch's traceback, whose advice is
    to load it with ``weights_only=False`` (which runs the payload). Through this loader it is
    refused like the checkpoint given on the command line: the global named, and
    ``--trust-checkpoint`` (``trust_checkpoint=True`` here) as the one opt-in. ``import
    posattack`` registers it (``trust_checkpoint=False``).
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    def load_from_local(filename, map_location):
        return load_checkpoint(filename, map_location=map_location,
                               trust_checkpoint=trust_checkpoint)

    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
