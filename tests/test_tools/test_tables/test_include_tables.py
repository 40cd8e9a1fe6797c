"""tools/tables/include_tables.py: README tables are the generated files, verbatim."""
from __future__ import annotations

import pytest
from helpers import load_tool

include = load_tool('include_tables')


def test_blocks_are_refilled_from_their_files(tmp_path):
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 't.md').write_text('| a |\n|---|\n| 1 |\n')
    text = ('intro\n<!-- include: docs/t.md -->\nold table\n<!-- end include -->\nafter\n')
    assert include.include_tables(text, str(tmp_path)) == (
        'intro\n<!-- include: docs/t.md -->\n| a |\n|---|\n| 1 |\n<!-- end include -->\nafter\n')


def test_a_missing_table_file_is_named(tmp_path):
    text = '<!-- include: docs/none.md -->\n<!-- end include -->\n'
    with pytest.raises(FileNotFoundError, match='docs/none.md'):
        include.include_tables(text, str(tmp_path))
