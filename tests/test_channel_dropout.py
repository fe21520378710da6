"""`dropout2d_conv1x1`: the Dropout2d mask folded into the 1x1 classifier's weight gives what
`nn.Dropout2d` then `nn.Conv2d` give - the same mask from the same seed, the same output and
the same gradients - in both memory layouts, and the plain modules outside training."""
import pytest
import torch
from torch import nn

from segadapter.modeling.layers.channel_dropout import dropout2d_conv1x1


def _pair(channels_last: bool, bias: bool = True):
    torch.manual_seed(0)
    x = torch.randn(3, 16, 6, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    classifier = nn.Conv2d(16, 5, 1, bias=bias)
    if bias:
        nn.init.normal_(classifier.bias)
    return x, nn.Dropout2d(0.3), classifier


def _run(fn, x, dropout, classifier, seed=7):
    x = x.detach().clone().requires_grad_(True)
    classifier.zero_grad()
    torch.manual_seed(seed)
    out = fn(x, dropout, classifier)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), x.grad, classifier.weight.grad.clone(), \
        None if classifier.bias is None else classifier.bias.grad.clone()


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_folded_mask_equals_dropout2d_then_conv(channels_last, bias):
    x, dropout, classifier = _pair(channels_last, bias)
    reference = _run(lambda x, d, c: c(d(x)), x, dropout, classifier)
    folded = _run(dropout2d_conv1x1, x, dropout, classifier)
    assert (reference[0] == 0).sum() < reference[0].numel()  # some channels kept
    for a, b in zip(reference, folded):
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
    # some channel of some sample was dropped: its input gradient is zero in both
    dropped = reference[1].abs().sum((2, 3)) == 0
    assert dropped.any() and torch.equal(dropped, folded[1].abs().sum((2, 3)) == 0)


def test_outside_training_it_is_the_plain_classifier():
    x, dropout, classifier = _pair(False)
    dropout.eval()
    torch.testing.assert_close(dropout2d_conv1x1(x, dropout, classifier), classifier(x))
