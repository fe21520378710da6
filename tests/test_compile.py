"""`--compile`: the inductor-compiled model predicts what the eager one does."""
import pytest
import torch

import segadapter
from segadapter.evaluation.inference import inference
from segadapter.utils.compile import compile_for_inference, cxx_compiler

needs_cxx = pytest.mark.skipif(cxx_compiler() is None, reason="torch.compile on CPU needs a C++ compiler")


@needs_cxx
def test_compiled_inference_matches_eager():
    torch.manual_seed(0)
    model = segadapter.create_model("segformer-b0", num_classes=4).eval()
    images = torch.randn(1, 3, 64, 96)
    eager = inference(model, images)
    compiled = compile_for_inference(model)
    assert compiled.num_classes == 4  # attributes still reach the wrapped model
    out = inference(compiled, images)
    assert out.shape == eager.shape == (1, 4, 64, 96)
    torch.testing.assert_close(out, eager, atol=1e-4, rtol=1e-4)


def test_compile_without_a_compiler_is_a_clear_error(monkeypatch):
    from segadapter.errors import ConfigError

    monkeypatch.setenv("PATH", "")
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(ConfigError, match="C\\+\\+ compiler"):
        compile_for_inference(torch.nn.Linear(2, 2))
