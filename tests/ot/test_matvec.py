"""CPU helpers of _matvec.py: the kernel buffer and the in-place exponential."""
import math

import pytest
import torch

from mmseg_saot.ot import _matvec


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_empty_kernel_is_a_writable_cpu_tensor_of_the_shape_and_dtype(dtype):
    kernel = _matvec.empty_kernel((2, 300, 70), dtype, torch.device('cpu'))
    assert kernel.shape == (2, 300, 70) and kernel.dtype == dtype
    assert kernel.is_contiguous() and kernel.device.type == 'cpu'
    assert kernel.data_ptr() % kernel.element_size() == 0
    kernel.fill_(0.5)
    kernel[1, 299, 69] = 2.0
    assert float(kernel.sum()) == pytest.approx(0.5 * (2 * 300 * 70 - 1) + 2.0, rel=1e-2)


def test_empty_kernel_without_numpy_is_torch_allocated(monkeypatch):
    monkeypatch.setattr(_matvec, 'np', None)
    kernel = _matvec.empty_kernel((1, 4, 5), torch.float32, 'cpu')
    assert kernel.shape == (1, 4, 5)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_exp_matches_torch_on_strided_views_with_infinities(dtype):
    gen = torch.Generator().manual_seed(0)
    full = (torch.rand(3, 40, 30, generator=gen) * -50).to(dtype)
    full[1, 15, 7] = -math.inf
    before = full.clone()
    view = full[:, 10:30]  # a row slice of a batch: not contiguous
    out = _matvec.exp_(view)
    assert out.data_ptr() == view.data_ptr()
    tol = 4e-7 if dtype == torch.float32 else 1e-15
    torch.testing.assert_close(full[:, 10:30], torch.exp(before[:, 10:30]), rtol=tol, atol=0)
    assert float(full[1, 15, 7]) == 0.0
    assert torch.equal(full[:, :10], before[:, :10]) and torch.equal(full[:, 30:], before[:, 30:])


def test_exp_leaves_autograd_and_other_devices_to_torch():
    # numpy writes behind autograd's back: the in-place exp of a tensor an earlier op
    # saved for backward gave silently wrong gradients instead of torch's error
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1
    z = (y * y).sum()
    _matvec.exp_(y)
    with pytest.raises(RuntimeError, match='modified by an inplace operation'):
        z.backward()
    meta = torch.empty(2, 3, device='meta')
    assert _matvec.exp_(meta).device.type == 'meta'


def test_empty_kernel_of_no_elements():
    assert _matvec.empty_kernel((1, 0, 5), torch.float32, 'cpu').shape == (1, 0, 5)
