"""The package imports light and the demo model meets its accuracy bar."""

import subprocess
import sys


def test_import_is_light():
    code = "import sys, robustness, robustness.cli; print('torch' in sys.modules, 'art' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_demo_model_accuracy(digits_model, digits_test):
    acc = float((digits_model.predict(digits_test.x).cpu() == digits_test.y).float().mean())
    assert acc >= 0.97
