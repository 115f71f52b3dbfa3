"""The README's promises to a newcomer, checked as a newcomer would meet them."""
import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
# the interpreter `make run` / `make test` create; the README tells readers to use it
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python fenced block, in order."""
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.MULTILINE | re.DOTALL)


def test_python_blocks_are_found_verbatim():
    text = "intro\n```python\nx = 1\n\nprint(x)\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == ["x = 1\n\nprint(x)\n"]


def test_readme_python_example_runs_as_written_from_any_folder(tmp_path):
    """Verbatim, with the venv's Python, outside the checkout and without PYTHONPATH."""
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert blocks, "README.md has no ```python block"
    assert VENV_PYTHON.exists(), f"{VENV_PYTHON} is missing: `make test` creates it"
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    printed = []
    for number, code in enumerate(blocks, start=1):
        script = tmp_path / f"readme_example_{number}.py"
        script.write_text(code, encoding="utf-8")
        run = subprocess.run([str(VENV_PYTHON), str(script)], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, (
            f"README.md python block {number} failed with {VENV_PYTHON} (if the error is "
            f"ModuleNotFoundError, the venv lacks the export_impact.pth that `make` writes):\n{run.stderr[-3000:]}")
        printed.append(run.stdout)
    # the first example is the event study on mpdta with ~ lpop (R did / csdid: overall ATT -0.0804)
    assert "event-study/dynamic" in printed[0] and "-0.0804" in printed[0], printed[0]
