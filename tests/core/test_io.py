import os
import stat

import pytest

from actadd.io import atomic_write, save_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = save_json({"kept": 1}, tmp_path / "run" / "headline.json")

    def fail_halfway(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail_halfway)
    assert '"kept": 1' in path.read_text()
    assert [p.name for p in path.parent.iterdir()] == ["headline.json"]


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        mode = stat.S_IMODE(save_json({}, tmp_path / "shared.json").stat().st_mode)
    finally:
        os.umask(old)
    assert mode == 0o644  # not mkstemp's 0600


def test_a_results_table_reads_back_row_for_row(tmp_path):
    """Tweets hold bare carriage returns, commas, quotes and newlines: each stays one row."""
    pd = pytest.importorskip("pandas")
    from actadd.studies.lifecycle.study import save_table

    table = pd.DataFrame(
        {
            "prompt": ["What I've been saying.\r\r#DeflateGate", 'a, "quoted"\nline', "plain", None],
            "success": [1.0, float("nan"), 0.0, 0.5],
            "sample": [0, 1, 2, 3],
        }
    )
    back = pd.read_csv(save_table(table, tmp_path / "completions.csv"))
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
