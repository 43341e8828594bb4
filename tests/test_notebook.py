"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel, and its figures show inline."""

import os

import pytest

from conftest import ROOT

NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_and_shows_its_figures():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # committed clean
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    os.environ.setdefault("MPLBACKEND", "Agg")
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [output for cell in code for output in cell.outputs if output.output_type == "error"]
    figures = [cell for cell in code if "figure" in cell.metadata.get("tags", [])]
    assert len(figures) == 2
    small_model_figure = figures[0]
    assert any("image/png" in output.get("data", {}) for output in small_model_figure.outputs)
    weights_line = next(output.text for cell in code for output in cell.outputs
                        if output.get("name") == "stdout" and output.text.startswith("InceptionV3 weights:"))
    if "skipping" not in weights_line:
        assert any("image/png" in output.get("data", {}) for output in figures[1].outputs)
    prediction = next(cell for cell in code if cell.source.startswith("red_and_blue = "))
    assert "('red', 0.8" in prediction.outputs[0]["data"]["text/plain"]
