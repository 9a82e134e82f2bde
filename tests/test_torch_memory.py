"""Releasing memory between steps, and covariances stored narrower than they are read."""

import sys

import pytest

torch = pytest.importorskip("torch")

from colorshare.torch import memory  # noqa: E402
from colorshare.torch.curvature import KRONECKER, Curvature  # noqa: E402
from colorshare.torch.stats import COVARIANCE_DTYPE  # noqa: E402


def test_release_finds_the_c_heap_on_linux_and_changes_no_tensor():
    if sys.platform.startswith("linux"):
        assert memory._malloc_trim() is not None
    kept = torch.randn(300, 300)
    before = kept.clone()
    junk = [torch.randn(1000, 1000) for _ in range(8)]  # freed pages for the trim to hand back
    del junk
    memory.release()
    assert torch.equal(kept, before)


def test_a_covariance_stored_narrow_is_read_in_float64():
    x = torch.randn(50, 6, dtype=torch.float64)
    sigma = (x.T @ x / 50).to(COVARIANCE_DTYPE)
    c = Curvature(KRONECKER, sigma_in=sigma)
    full = c.covariance()
    assert full.dtype == torch.float64 and torch.equal(full, sigma.double())
    assert c.sigma_in.dtype == COVARIANCE_DTYPE  # the stored copy is not widened in place
    D = torch.randn(3, 6, dtype=torch.float64)
    assert c.quad(D) == pytest.approx(0.5 * float(torch.trace(D @ full @ D.T)), rel=1e-12)
