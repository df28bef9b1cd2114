"""Cost functions of ``mmseg_saot.ot.costs``."""
import pytest
import torch

from mmseg_saot.ot import cosine_cost


def test_batched_cosine_cost_equals_each_problem_alone():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
    batched = cosine_cost(x, y)
    assert batched.shape == (3, 7, 4)
    for i in range(3):
        torch.testing.assert_close(batched[i], cosine_cost(x[i], y[i]))
    cos = torch.nn.functional.cosine_similarity(x[0][:, None], y[0][None], dim=-1)
    torch.testing.assert_close(batched[0], 1.0 - cos)


@pytest.mark.parametrize('dtype, bound', [(torch.float16, 1e-3), (torch.bfloat16, 4e-3)])
def test_batched_cosine_cost_of_half_features_is_accumulated_in_fp32(dtype, bound):
    # the batched path multiplied in the half dtype: a bf16 cost, twice the error
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 200, 64, generator=gen).to(dtype)
    y = torch.randn(2, 150, 64, generator=gen).to(dtype)
    batched = cosine_cost(x, y)
    assert batched.dtype == torch.float32
    for i in range(2):
        torch.testing.assert_close(batched[i], cosine_cost(x[i], y[i]))
    exact = cosine_cost(x.double(), y.double())
    # what is left is the rounding of the normalised features (bf16 product: 6.3e-3)
    assert float((batched.double() - exact).abs().max()) < bound
    torch.testing.assert_close(cosine_cost(x, y[0]), cosine_cost(x, y[0][None].expand(2, -1, -1)))


def test_cosine_cost_feature_size_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r'`x` and `y` must share their feature dimension, '
                       r'got shapes \(4, 3\) and \(5, 2\)'):
        cosine_cost(torch.randn(4, 3), torch.randn(5, 2))


def test_sqeuclidean_cost_far_from_the_origin_keeps_fp32_precision():
    # |x|^2 + |y|^2 - 2 x.y in fp32 at 1000 lost ~1.4 on costs of ~15; the online
    # solver's plans then changed with a common shift of the features
    from mmseg_saot.ot import sqeuclidean_cost
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 16, generator=gen), torch.randn(40, 16, generator=gen)
    exact = 0.5 * torch.cdist(x.double(), y.double()) ** 2
    far = sqeuclidean_cost(x + 1000, y + 1000)
    # the shifted points themselves are rounded to fp32 (spacing 6e-5 at 1000)
    assert far.dtype == torch.float32
    assert float((far.double() - exact).abs().max()) < 1e-2
    assert float((sqeuclidean_cost(x, y).double() - exact).abs().max()) < 1e-5


def test_batched_sqeuclidean_cost_equals_each_problem_alone():
    from mmseg_saot.ot import sqeuclidean_cost
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 20, 8, generator=gen), torch.randn(3, 30, 8, generator=gen)
    batched = sqeuclidean_cost(x, y)
    assert batched.shape == (3, 20, 30)
    for i in range(3):
        torch.testing.assert_close(batched[i], sqeuclidean_cost(x[i], y[i]))
        torch.testing.assert_close(batched[i].double(),
                                   0.5 * torch.cdist(x[i].double(), y[i].double()) ** 2,
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_sqeuclidean_cost_of_half_features_is_the_distance_of_those_points(dtype):
    # centred points rounded to half again were other points: errors of ~1e-2
    from mmseg_saot.ot import sqeuclidean_cost
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 16, generator=gen).to(dtype)
    y = torch.randn(30, 16, generator=gen).to(dtype)
    exact = 0.5 * torch.cdist(x.double(), y.double()) ** 2
    cost = sqeuclidean_cost(x, y)
    assert cost.dtype == torch.float32
    assert float((cost.double() - exact).abs().max()) < 1e-5
