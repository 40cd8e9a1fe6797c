"""Convert the authors' DeepLabv3-R50 OS16 checkpoint into an MMEngine checkpoint for posattack.

    python tools/model_converters/convert_authors_checkpoint.py \
        zero_padding_best_deeplabv3_resnet50_cityscapes_os16.pth work_dirs/authors_os16.pth

The result loads with configs/paper/deeplabv3_r50-os16_authors_cityscapes.py in
tools/attack.py, tools/identify.py and mmseg's own tools. The input is read with
torch.load(weights_only=True); every key must map onto the model and every model weight must
be filled, with equal shapes, or nothing is written (exit status 2, one line naming the keys).
"""
from __future__ import annotations

import argparse

from ..utils.config_scope import packaged_config

DEFAULT_CONFIG = packaged_config('paper/deeplabv3_r50-os16_authors_cityscapes.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('input', help="the authors' checkpoint (a dict with 'model_state')")
    parser.add_argument('output', help='where to write the MMEngine checkpoint')
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='the mmseg config whose model receives the weights '
                        '(default: configs/paper/deeplabv3_r50-os16_authors_cityscapes.py)')
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='load an input that needs globals outside the allowlist '
                        '(runs arbitrary code from the file: only for files you trust)')
    parser.epilog = 'Errors print one line; set POSATTACK_DEBUG=1 to see the traceback.'
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from ..models.authors_checkpoint import convert_authors_checkpoint
    from ..utils.cli import BAD_INPUT_ERRORS, report_bad_input
    try:
        summary = convert_authors_checkpoint(args.input, args.output, args.config,
                                             trust_checkpoint=args.trust_checkpoint)
    except BAD_INPUT_ERRORS as error:
        return report_bad_input(error)
    print(f"wrote {summary['out']}: {summary['num_tensors']} tensors from {args.input} "
          f"(sha256 {summary['source_sha256'][:12]})")
    return 0

