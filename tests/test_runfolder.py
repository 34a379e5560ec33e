"""Run folders appear whole or not at all."""

from __future__ import annotations

import pytest

from delever.runfolder import atomic_run_folder, run_folder_name


def test_a_failure_inside_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError, match="disk full"), atomic_run_folder(tmp_path, "run-x") as tmp:
        (tmp / "steps.parquet").write_bytes(b"partial")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_success_renames_to_the_final_name_with_its_files(tmp_path):
    name = run_folder_name("scenario", "abc123")
    with atomic_run_folder(tmp_path, name) as tmp:
        (tmp / "summary.json").write_text("{}")
        assert not (tmp_path / name).exists()
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name / "summary.json").read_text() == "{}"
    assert name.startswith("scenario-abc123-") and name.endswith("Z")
    assert oct((tmp_path / name).stat().st_mode & 0o777) == "0o755"
