"""plotly.js is written once per output root; the reports load it by a relative path."""

from __future__ import annotations

import pytest

from delever.plotly_asset import ensure_plotly_asset, plotly_asset_name, plotly_script_src
from delever.report import write_html_report
from delever.runner import run_scenario, write_run
from delever.scenario import load_scenario, resolve_data_dir
from report_helpers import check_report, entries


@pytest.fixture(scope="module")
def small_run():
    return run_scenario(load_scenario(None, ["book.synthesize.positions=2000"]), resolve_data_dir())


def test_two_runs_into_one_root_share_one_asset(small_run, tmp_path):
    root = tmp_path / "runs"
    first = write_run(small_run, root)
    asset = check_report(first / "report.html", root)
    stat = asset.stat()
    second = write_run(small_run, root)
    assert check_report(second / "report.html", root) == asset
    assert sorted(entries(root)) == sorted([first.name, second.name])
    assert [p.name for p in root.glob("plotly-*")] == [plotly_asset_name()]  # one file, same name
    assert (asset.stat().st_mtime_ns, asset.stat().st_ino) == (stat.st_mtime_ns, stat.st_ino)  # not rewritten
    assert not list(root.glob(".*"))  # no temporary files left


def test_report_written_to_a_given_file_gets_the_asset_beside_it(small_run, tmp_path):
    page = tmp_path / "elsewhere" / "my-report.html"
    page.parent.mkdir()
    write_html_report(small_run, page)
    check_report(page, page.parent)
    html = page.read_text()
    # the script tag comes before every plot div and every Plotly.newPlot call
    tag = html.index(f'<script charset="utf-8" src="{plotly_asset_name()}"></script>')
    assert tag < html.index('class="plotly-graph-div"') and tag < html.index("Plotly.newPlot")


def test_script_src_is_relative_to_the_report(tmp_path):
    assert plotly_script_src(tmp_path / "runs" / "a-run" / "report.html", tmp_path / "runs") == f"../{plotly_asset_name()}"
    assert plotly_script_src(tmp_path / "v" / "validation.html") == plotly_asset_name()
    asset = ensure_plotly_asset(tmp_path / "runs")
    assert asset.read_text(encoding="utf-8").startswith("/**") and asset.stat().st_size > 1_000_000
