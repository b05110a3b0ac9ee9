"""README's Python example, run as a reader would paste it: the front door must stay true."""

import re
from pathlib import Path

import pytest

from conftest import load_or_skip

README = Path(__file__).resolve().parent.parent / "README.md"


def python_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_python_api_example_runs_and_says_what_it_promises(mnist_root, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib", reason='the example plots its curves (pip install "fastdl[plot]")')
    code = python_example()
    for name in set(re.findall(r'backend="(\w+)"', code)):
        load_or_skip(name)
    monkeypatch.setenv("FASTDL_DATA", str(mnist_root))
    monkeypatch.chdir(tmp_path)                        # it writes params.npz and curves.png where it runs
    scope = {}
    exec(compile(code, str(README), "exec"), scope)
    printed = capsys.readouterr().out.splitlines()
    assert float(printed[0]) >= 0.97                   # "ends with a test accuracy of about 0.97"
    errors = eval(printed[1], {})                      # gradient_check's relative errors, float64
    assert set(errors) == {"W1", "b1", "W2", "b2"} and max(errors.values()) < 1e-6
    assert (tmp_path / "params.npz").is_file() and (tmp_path / "curves.png").is_file()
    assert scope["net2"].accuracy(*scope["fastdl"].datasets.load_mnist()[1]) == pytest.approx(float(printed[0]))
