"""Where in depth a segmentor keeps position: the position attack, layer by layer.

(Not tools/profile.py: a script's folder comes first on sys.path, and a profile.py there
would shadow the standard library's ``profile``, which cProfile imports, in every tool.)

    python tools/depth_profile.py CONFIG CHECKPOINT [--work-dir DIR] [--layers L1 L2 ... | all]
    python -m torch.distributed.run --nproc_per_node=4 tools/depth_profile.py CONFIG CKPT \
        --launcher pytorch

For every layer (default: each backbone stage output, each neck output, and the tensor the
decode head reads) writes how concentrated its flip-difference scores are and what targeted
vs random removal of 5/10/20% of its channels costs, with p-values and confidence intervals:
profile.json, profile.md, concentration_vs_depth.png, gap_vs_depth.png,
class_drop_by_layer.png, and one tools/attack.py-style work dir per layer under layers/.
"""
from __future__ import annotations

# The parser and the run live in the package (posattack/cli/depth_profile.py), so that the installed
# `posattack profile` and this script are one tool; names kept here for their callers.
from posattack.cli.depth_profile import main, parse_args  # noqa: F401
from posattack.utils.distributed import exit_process

if __name__ == '__main__':
    exit_process(main())
