"""GE2E / TE2E losses against loop references written straight from the paper's formulas."""

import math

import pytest
import torch

from ge2e.loss import GE2ELoss, TE2ELoss, contrast_loss, softmax_loss
from ge2e.similarity import similarity_matrix


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b) / (a.norm() * b.norm())


def reference_similarity(e: torch.Tensor, w: float, b: float) -> torch.Tensor:
    n, m, _ = e.shape
    s = torch.empty(n, m, n, dtype=e.dtype)
    for j in range(n):
        for i in range(m):
            for k in range(n):
                if k == j:
                    c = sum(e[j, mm] for mm in range(m) if mm != i) / (m - 1)
                else:
                    c = sum(e[k, mm] for mm in range(m)) / m
                s[j, i, k] = w * _cos(e[j, i], c) + b
    return s


def reference_loss(e: torch.Tensor, w: float, b: float, method: str) -> torch.Tensor:
    s = reference_similarity(e, w, b)
    n, m, _ = e.shape
    total = torch.zeros((), dtype=e.dtype)
    for j in range(n):
        for i in range(m):
            if method == "softmax":
                total = total - s[j, i, j] + torch.log(sum(torch.exp(s[j, i, k]) for k in range(n)))
            else:
                others = max(torch.sigmoid(s[j, i, k]) for k in range(n) if k != j)
                total = total + 1 - torch.sigmoid(s[j, i, j]) + others
    return total


@pytest.mark.parametrize("shape", [(2, 2, 3), (4, 3, 5), (5, 6, 8)])
def test_similarity_matches_loop_reference(shape):
    e = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = similarity_matrix(e, 7.0, -2.0)
    torch.testing.assert_close(got, reference_similarity(e, 7.0, -2.0))


@pytest.mark.parametrize("method", ["softmax", "contrast"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_loop_reference(method, seed):
    e = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    loss = GE2ELoss(init_w=3.0, init_b=-1.0, method=method).double()
    torch.testing.assert_close(loss(e), reference_loss(e, 3.0, -1.0, method))


def test_tiny_example_by_hand():
    # Two speakers, two utterances, 2-D embeddings on the axes: e_00 = e_01 = x, e_10 = x, e_11 = y.
    x, y = [1.0, 0.0], [0.0, 1.0]
    e = torch.tensor([[x, x], [x, y]], dtype=torch.float64)
    w, b = 10.0, -5.0
    # Leave-one-out centroids: c_0^(-i) = x; c_1^(-0) = y, c_1^(-1) = x (orthogonal to e_11 = y).
    # Full centroids: c_0 = x, c_1 = (x + y) / 2.
    r = 1 / math.sqrt(2)
    expected_s = torch.tensor(
        [[[w * 1 + b, w * r + b], [w * 1 + b, w * r + b]], [[w * 1 + b, w * 0 + b], [w * 0 + b, w * 0 + b]]],
        dtype=torch.float64,
    )
    s = similarity_matrix(e, w, b)
    torch.testing.assert_close(s, expected_s)
    # Softmax loss: terms -S_jij + log(exp S_ji0 + exp S_ji1).
    rows = [(5.0, 5.0, 10 * r - 5), (5.0, 5.0, 10 * r - 5), (-5.0, 5.0, -5.0), (-5.0, -5.0, -5.0)]
    expected = sum(-own + math.log(math.exp(a) + math.exp(c)) for own, a, c in rows)
    assert softmax_loss(s).item() == pytest.approx(expected, rel=1e-12)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected_contrast = (1 - sig(5)) + sig(10 * r - 5) + (1 - sig(5)) + sig(10 * r - 5)
    expected_contrast += (1 - sig(-5)) + sig(5) + (1 - sig(-5)) + sig(-5)
    assert contrast_loss(s).item() == pytest.approx(expected_contrast, rel=1e-12)


def test_inclusive_centroid_would_fail():
    """An implementation with the inclusive centroid on the diagonal gives a different matrix."""
    e = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s = similarity_matrix(e, 1.0, 0.0)
    c = e.mean(1)
    inclusive = torch.nn.functional.cosine_similarity(e.unsqueeze(2), c.view(1, 1, 3, 5), dim=-1)
    diag_ours = s.diagonal(dim1=0, dim2=2)
    diag_incl = inclusive.diagonal(dim1=0, dim2=2)
    assert (diag_ours < diag_incl).all(), "leave-one-out similarity must be lower than the inclusive one"
    off = ~torch.eye(3, dtype=torch.bool).unsqueeze(1).expand(3, 4, 3)
    torch.testing.assert_close(s[off], inclusive[off])


@pytest.mark.parametrize("method", ["softmax", "contrast"])
def test_gradcheck_float64(method):
    e = torch.randn(3, 3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    fn = softmax_loss if method == "softmax" else contrast_loss
    assert torch.autograd.gradcheck(lambda e, w, b: fn(similarity_matrix(e, w, b)), (e, w, b))


def test_gradient_pulls_utterance_towards_own_centroid():
    e = torch.randn(4, 5, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    e.requires_grad_(True)
    loss = GE2ELoss().double()
    loss(e).backward()
    with torch.no_grad():
        stepped = e - 1e-3 * e.grad
        before = similarity_matrix(e, 1.0, 0.0).diagonal(dim1=0, dim2=2).mean()
        after = similarity_matrix(stepped, 1.0, 0.0).diagonal(dim1=0, dim2=2).mean()
    assert after > before
    assert loss(stepped) < loss(e.detach())


def test_w_stays_positive_after_step_pushing_it_negative():
    loss = GE2ELoss(grad_scale=1.0)
    opt = torch.optim.SGD(loss.parameters(), lr=1.0)
    loss.w.grad = torch.tensor(50.0)  # one step to w = 10 - 50 < 0
    opt.step()
    assert loss.w.item() < 0
    e = torch.randn(3, 4, 5)
    s = loss.similarity(e)
    assert loss.w.item() > 0
    torch.testing.assert_close(s, similarity_matrix(e, loss.w.item(), loss.b.item()))
    out = loss(e)
    out.backward()
    assert loss.w.grad is not None and loss.w.grad.abs().item() > 0, "w must still learn at the boundary"


def test_gradient_scale_on_w_and_b():
    e = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    scaled, plain = GE2ELoss(grad_scale=0.01), GE2ELoss(grad_scale=1.0)
    scaled(e).backward()
    plain(e).backward()
    torch.testing.assert_close(scaled.w.grad, 0.01 * plain.w.grad)
    torch.testing.assert_close(scaled.b.grad, 0.01 * plain.b.grad)


@pytest.mark.parametrize("shape", [(1, 4, 3), (4, 1, 3)])
@pytest.mark.parametrize("cls", [GE2ELoss, TE2ELoss])
def test_too_small_batches_raise(shape, cls):
    with pytest.raises(ValueError, match=r"N >= 2|M >= 2"):
        cls()(torch.randn(*shape))


def test_te2e_matches_loop_reference():
    e = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    w, b, p, shift = 3.0, -1.0, 2, 1
    loss = TE2ELoss(init_w=w, init_b=b, num_enroll=p).double()
    n, m, _ = e.shape
    expected = torch.zeros((), dtype=torch.float64)
    for j in range(n):
        k = (j + shift) % n
        for i in range(m):
            enroll = [(i + 1 + q) % m for q in range(p)]
            c_pos = sum(e[j, q] for q in enroll) / p
            c_neg = sum(e[k, q] for q in enroll) / p
            expected += 1 - torch.sigmoid(w * _cos(e[j, i], c_pos) + b)  # delta(j, k) = 1
            expected += torch.sigmoid(w * _cos(e[j, i], c_neg) + b)  # delta(j, k) = 0
    torch.testing.assert_close(loss(e, shift=shift), expected)


def test_te2e_default_enrollment_is_leave_one_out():
    e = torch.randn(3, 4, 5, dtype=torch.float64)
    pos, _ = TE2ELoss(init_w=1.0, init_b=0.0).double().tuple_scores(e, shift=1)
    torch.testing.assert_close(pos, similarity_matrix(e, 1.0, 0.0).diagonal(dim1=0, dim2=2).T)


@pytest.mark.parametrize("method", ["softmax", "contrast"])
def test_float32_loss_matches_float64_reference(method):
    e = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    got = GE2ELoss(init_w=3.0, init_b=-1.0, method=method)(e.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), reference_loss(e, 3.0, -1.0, method), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    e = torch.randn(8, 5, 16)
    loss = GE2ELoss()
    torch.testing.assert_close(loss.cuda()(e.cuda()).cpu(), GE2ELoss()(e), rtol=1e-4, atol=1e-4)


def test_loss_called_once_per_source_before_one_backward():
    """MultiReader evaluates the loss on several batches and backpropagates their weighted sum once: the
    gradients are those of the separate losses, weighted."""
    loss = GE2ELoss()
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(3, 4, 5, generator=g, requires_grad=True), torch.randn(3, 4, 5, generator=g, requires_grad=True)
    (loss(a) + 0.5 * loss(b)).backward()
    separate = [torch.autograd.grad(loss(x), [x, loss.w, loss.b]) for x in (a, b)]
    torch.testing.assert_close(a.grad, separate[0][0])
    torch.testing.assert_close(b.grad, 0.5 * separate[1][0])
    torch.testing.assert_close(loss.w.grad, separate[0][1] + 0.5 * separate[1][1])
    torch.testing.assert_close(loss.b.grad, separate[0][2] + 0.5 * separate[1][2])
    assert loss.w.grad.abs() > 0 and loss.b.grad.abs() > 0


def test_inclusive_ablation_uses_the_full_centroid_everywhere():
    """``exclusive=False`` (the paper's ablation): every centroid is the mean of all M utterances."""
    e = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    c = e.mean(1)
    full = torch.nn.functional.cosine_similarity(e.unsqueeze(2), c.view(1, 1, 3, 5), dim=-1)
    torch.testing.assert_close(similarity_matrix(e, 2.0, -1.0, exclusive=False), 2.0 * full - 1.0)
    loss = GE2ELoss(init_w=2.0, init_b=-1.0, exclusive=False).double()
    assert loss(e).item() == pytest.approx(softmax_loss(2.0 * full - 1.0).item(), rel=1e-12)
    assert loss(e).item() != pytest.approx(GE2ELoss(init_w=2.0, init_b=-1.0).double()(e).item(), rel=1e-6)


@pytest.mark.parametrize("make", [lambda: GE2ELoss(learn_scale=False), lambda: TE2ELoss(learn_scale=False)])
def test_fixed_scale_ablation_keeps_w_and_b(make):
    loss = make()
    e = torch.randn(3, 4, 5, requires_grad=True)
    loss(e).backward()
    assert e.grad is not None and loss.w.grad is None and loss.b.grad is None
    torch.optim.SGD(loss.parameters(), lr=1.0).step()
    assert (loss.w.item(), loss.b.item()) == (10.0, -5.0)
    learned = GE2ELoss(grad_scale=1.0)
    learned(e.detach()).backward()
    assert learned.w.grad is not None and learned.w.grad.abs().item() > 0


def test_build_loss_reads_the_ablation_switches():
    from ge2e.config import LossConfig
    from ge2e.errors import ConfigError
    from ge2e.loss import build_loss

    ablated = build_loss(LossConfig(centroid="inclusive", learn_scale=False))
    assert isinstance(ablated, GE2ELoss) and not ablated.exclusive and not ablated.w.requires_grad
    assert build_loss(LossConfig()).exclusive and build_loss(LossConfig()).w.requires_grad
    assert not build_loss(LossConfig(method="te2e", learn_scale=False)).b.requires_grad
    with pytest.raises(ConfigError, match="GE2E only"):
        LossConfig(method="te2e", centroid="inclusive")
