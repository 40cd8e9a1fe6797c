"""Convert the authors' DeepLabv3-R50 OS16 checkpoint into an MMEngine checkpoint for posattack.

    python tools/model_converters/convert_authors_checkpoint.py \
        zero_padding_best_deeplabv3_resnet50_cityscapes_os16.pth work_dirs/authors_os16.pth

The result loads with configs/paper/deeplabv3_r50-os16_authors_cityscapes.py in
tools/attack.py, tools/identify.py and mmseg's own tools. The input is read with
torch.load(weights_only=True); every key must map onto the model and every model weight must
be filled, with equal shapes, or nothing is written (exit status 2, one line naming the keys).
"""
from __future__ import annotations

# The parser and the run live in the package (posattack/cli/convert_authors_checkpoint.py), so
# that the installed `posattack convert-authors` and this script are one tool; names kept here for
# their callers.
from posattack.cli.convert_authors_checkpoint import main, parse_args  # noqa: F401
from posattack.utils.distributed import exit_process

if __name__ == '__main__':
    exit_process(main())
