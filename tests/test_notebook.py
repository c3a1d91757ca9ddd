"""notebooks/quickstart.ipynb: committed without outputs, and it runs from top to bottom."""
import re
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_is_stripped_and_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code"
    assert all(not c.outputs and c.execution_count is None for c in code), "commit the notebook with outputs stripped"
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "ASP answer:" in text and "NSM answer:" in text and "program:" in text
    # the demo asks the generator's own (well-posed) questions and answers them right
    asp = re.search(r"^ASP answer: (\S+)", text, re.M).group(1)
    nsm = re.search(r"^NSM answer: (\S+)", text, re.M).group(1)
    gold = re.search(r"^gold answer: (\S+)", text, re.M).group(1)
    assert asp == gold and nsm == gold
    # the NSM trace: one line per program step, naming the machine step behind it
    assert "[NSM step 1: shift" in text and "[reads NSM step" in text
    batch = re.findall(r"^.*?\?\s+(\S+)\s+\(gold (\S+)\)$", text, re.M)
    assert len(batch) >= 3 and all(got == want for got, want in batch), batch
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 4  # the scene, two explanations, the scene graph
