"""What every run on one trained model takes, declared once.

tools/attack.py, tools/depth_profile.py and tools/consistency.py each turn their arguments
into an options dataclass. The fields they share (the model, where to write, how many test
images and in what batches, config overrides, whether to trust the checkpoint) live in
:class:`ModelRunOptions`; each tool's options subclass it and add their own. A tool builds
its options with :func:`options_from_args`, so an argument reaches the run by having the
field's name: the options never list their arguments a second time.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional, TypeVar

T = TypeVar('T')


@dataclass
class ModelRunOptions:
    """The model to run (config and checkpoint), the work dir, and the test set's limits."""
    config: str
    checkpoint: str
    work_dir: str
    max_images: Optional[int] = None
    batch_size: Optional[int] = None
    cfg_options: Optional[dict] = None
    trust_checkpoint: bool = False


def options_from_args(cls: type[T], args: Any, **given) -> T:
    """``cls`` (an options dataclass) from the attributes of ``args`` that share a field's
    name, then ``given`` (values the tool computed, e.g. a default work dir), which win.
    A field with neither keeps its default; a ``given`` name that is not a field raises."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(given) - names)
    if unknown:
        raise TypeError(f'{cls.__name__} has no field {", ".join(unknown)}')
    values = {name: getattr(args, name) for name in names if hasattr(args, name)}
    values.update(given)
    return cls(**values)
