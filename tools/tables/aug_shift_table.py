"""Compare models on accuracy, shift consistency and dependence on position channels.

    python tools/tables/aug_shift_table.py --run demo CONS.json RESULTS.json \
        --run augshift CONS2.json RESULTS2.json [--fraction 0.1] [--out table.md]
    python tools/tables/aug_shift_table.py --run plain/0 ... --run blurpool/0 ... \
        [--reference plain shift-crops] [--pair augshift blurpool]

Each --run names a model, its tools/consistency.py output (consistency.json) and its
tools/attack.py output (results.json). Prints a Markdown table (the paper's Table 2 for
segmentation, plus targeted-minus-random and periphery-minus-center drops at the channel
count nearest --fraction of the layer) and writes it, with the numbers as JSON, when --out
is given.
"""
from __future__ import annotations

import argparse
import datetime
import os.path as osp
import sys

from posattack.report.aug_shift_table import (comparison_rows, markdown_table, over_seeds_table,
                                              paired_with_reference_table)
from posattack.utils.fileio import read_json, write_json_atomic, write_text_atomic
from posattack.utils.machine import measured_by


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--run', nargs=3, action='append',
                        metavar=('NAME', 'CONSISTENCY_JSON', 'RESULTS_JSON'))
    parser.add_argument('--rerender', metavar='TABLE_MD',
                        help='write TABLE_MD again from the rows stored beside it (.json), '
                        'keeping its stamp: for a change of how rows print, not of what was '
                        'measured (e.g. verdict words withdrawn)')
    parser.add_argument('--fraction', type=float, default=0.1,
                        help='compare removals of this fraction of the channels (nearest N)')
    parser.add_argument('--out', help='write the table here (and the numbers beside it as '
                        '.json)')
    parser.add_argument('--reference', nargs='+', default=['plain', 'shift-crops'],
                        help='with setting/seed names: the settings every other one is '
                        'compared with, seed by seed, one table each (default: plain, and '
                        'shift-crops, the control that isolates the AugShift loss)')
    parser.add_argument('--pair', nargs=2, action='append', metavar=('SETTING', 'REFERENCE'),
                        help='with setting/seed names: one more paired table, SETTING minus '
                        'REFERENCE alone (repeatable; default: augshift blurpool, the '
                        "paper's Table 2 comparison, when both are there)")
    parser.add_argument('--command', help='stamp the table with the date, the machine and '
                        'this command (the one that made the runs)')
    parser.add_argument('--not-rerun', nargs='+', metavar='SETTING', default=[],
                        help='settings the command left out (a declared subset): the table '
                        'says so under its stamp, so their absence is not read as a result')
    parser.add_argument('--not-trained', nargs='+', metavar='SETTING/SEED', default=[],
                        help='runs of the command with no finished model yet (KEPT_ONLY=1): '
                        'the table names them under its stamp')
    parser.add_argument('--earlier', metavar='TABLE_MD',
                        help='with --not-rerun: where their last measurement stays, dated')
    args = parser.parse_args(argv)
    if (args.run is None) == (args.rerender is None):
        parser.error('give --run ... (a new table) or --rerender TABLE_MD, not both')
    stamp = None
    try:
        if args.rerender:
            rows = read_json(osp.splitext(args.rerender)[0] + '.json')
            with open(args.rerender) as f:
                stamp = next((line.rstrip('\n').split(' Re-rendered ')[0] for line in f
                          if line.startswith('Measured ')), None)
            args.out = args.rerender
        else:
            rows = comparison_rows([tuple(run) for run in args.run], args.fraction)
    except (ValueError, KeyError, OSError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    shifts = sorted({int(key.split('.')[1]) for row in rows for key in row['consistency']
                     if key.startswith('Cons.') and key.count('.') == 1})
    table = markdown_table(rows, shifts)
    if any('/' in row['model'] for row in rows):  # setting/seed names: a summary per setting
        table += '\nOver training seeds (mean ± sd):\n\n' + over_seeds_table(rows, shifts)
        for reference in args.reference:
            paired = paired_with_reference_table(rows, shifts, reference=reference)
            if paired:
                table += (f'\nEach setting minus `{reference}`, paired by training seed '
                          '(t 95% interval over the seeds paired, df = seeds - 1):\n\n'
                          + paired)
        for setting, reference in args.pair or [('augshift', 'blurpool')]:
            paired = paired_with_reference_table(rows, shifts, reference=reference,
                                                 settings=[setting])
            if paired:
                table += (f'\n`{setting}` minus `{reference}`, paired by training seed '
                          '(t 95% interval over the seeds paired, df = seeds - 1):\n\n'
                          + paired)
    if args.not_trained:
        table = ('Not trained yet, so not in this table (the next run of the command without '
                 f'KEPT_ONLY trains them): {", ".join(args.not_trained)}.\n\n' + table)
    if args.not_rerun:
        table = (f'Not rerun by this command, so not in this table: {", ".join(args.not_rerun)}.'
                 + (f' Their last measurement stays in `{args.earlier}`, with its date and '
                    'notes.' if args.earlier else '') + '\n\n' + table)
    if args.command:
        table = f'{measured_by(args.command)}.\n\n' + table
    elif stamp:
        table = (f'{stamp} Re-rendered {datetime.date.today().isoformat()} from the stored rows '
                 '(`tools/tables/aug_shift_table.py --rerender`): rows without a rank test print '
                 '"verdict withdrawn".\n\n' + table)
    print(table)
    if args.out:
        write_text_atomic(args.out, table)
        write_json_atomic(osp.splitext(args.out)[0] + '.json', rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
