"""Reports: what a person reads after an attack, and the statistics behind its verdicts.

* :mod:`.results`: the results dict (results.json): check, group over seeds, compare, CSV;
* :mod:`.statistics` (draws, images, models), :mod:`.per_image` (the counts the image
  bootstrap resamples), :mod:`.significance` (one model's tests), :mod:`.pooling` (across
  trained models); :mod:`.statistics_markdown` writes them as Markdown;
* :mod:`.plots` and :mod:`.overlay` (+ :mod:`.overlay_manifest`): PNGs;
* :mod:`.markdown`: report.md and :func:`write_report`, everything at once;
* :mod:`.aug_shift_table`: the AugShift comparison table.

Statistics sit below plots and plots below markdown: no module here imports one above it.
This package also answers for the 0.1 module ``posattack.report``: the names it held are
exported here.
"""
from __future__ import annotations

from ..utils.fileio import read_json
from .markdown import (build_markdown_report, format_summary_table, write_markdown_report,
                       write_report)
from .results import (CSV_COLUMNS, MEAN_ROW_CLASS, MODES, PAPER_REGIONS, GroupKey, aggregate,
                      border_bands, compare_targeted_random, group_key, group_miou, present_regions,
                      region_drops, region_miou, results_to_rows, setting_label, summarize_values,
                      validate_results, write_results_csv)

__all__ = [
    'CSV_COLUMNS', 'GroupKey', 'MEAN_ROW_CLASS', 'MODES', 'PAPER_REGIONS', 'aggregate',
    'border_bands', 'build_markdown_report', 'compare_targeted_random', 'format_summary_table',
    'group_key', 'group_miou', 'present_regions', 'read_json', 'region_drops', 'region_miou',
    'results_to_rows', 'setting_label', 'summarize_values', 'validate_results',
    'write_markdown_report', 'write_report', 'write_results_csv',
]
