import pytest
import torch

from anyres_data.spec import PatchSpec, as_spec_tensor, spec_axes, spec_grid, specs_to_tensor, tensor_to_specs


def test_global_spec_covers_unit_square_with_pixel_centres():
    spec = PatchSpec.global_(4)
    xs, ys = spec_axes(spec, dtype=torch.float64)
    assert xs.tolist() == [[0.125, 0.375, 0.625, 0.875]]
    assert ys.tolist() == xs.tolist()
    assert spec.centre == (0.5, 0.5)
    assert spec.window == (0.0, 0.0, 1.0, 1.0)


def test_patch_pixel_centres_follow_design_convention():
    spec = PatchSpec(s=100.0, x0=10.5, y0=20.25, p=8)
    xs, ys = spec_axes(spec, dtype=torch.float64)
    for i in range(8):
        assert xs[0, i].item() == pytest.approx((10.5 + i + 0.5) / 100)
        assert ys[0, i].item() == pytest.approx((20.25 + i + 0.5) / 100)
    assert spec.centre == pytest.approx(((10.5 + 4) / 100, (20.25 + 4) / 100))


def test_grid_layout_is_row_major_x_then_y():
    spec = PatchSpec(s=10.0, x0=1.0, y0=3.0, p=3)
    grid = spec_grid(spec, dtype=torch.float64)
    assert grid.shape == (1, 3, 3, 2)
    # pixel (i=2, j=0): x from column 2, y from row 0
    assert grid[0, 0, 2].tolist() == pytest.approx([(1 + 2.5) / 10, (3 + 0.5) / 10])


def test_margin_extends_grid_on_both_sides():
    spec = PatchSpec(s=32.0, x0=8.0, y0=8.0, p=16)
    xs, _ = spec_axes(spec, margin=2, dtype=torch.float64)
    assert xs.shape == (1, 20)
    assert xs[0, 0].item() == pytest.approx((8 - 2 + 0.5) / 32)
    assert xs[0, -1].item() == pytest.approx((8 + 16 + 1 + 0.5) / 32)


def test_resampled_keeps_window_and_changes_pixel_count():
    spec = PatchSpec(s=300.0, x0=37.5, y0=12.0, p=64)
    low = spec.resampled(16)
    assert low.window == pytest.approx(spec.window)
    assert low.p == 16 and low.scale == pytest.approx(spec.scale)
    # the n-argument of spec_axes is the same thing as resampling
    a = spec_axes(spec, n=16, dtype=torch.float64)[0]
    b = spec_axes(low, dtype=torch.float64)[0]
    assert torch.allclose(a, b)


def test_from_centre_round_trips():
    spec = PatchSpec.from_centre(s=512.0, v=(0.3, 0.7), p=64)
    assert spec.centre == pytest.approx((0.3, 0.7))


def test_box_matches_pil_convention():
    spec = PatchSpec(s=50.0, x0=5.0, y0=10.0, p=10)
    assert spec.box(200) == pytest.approx((20.0, 40.0, 60.0, 80.0))


def test_tensor_round_trip_and_batch():
    specs = [PatchSpec(64.0, 0.0, 0.0, 32), PatchSpec(128.0, 10.25, 3.5, 32)]
    t = specs_to_tensor(specs)
    assert t.shape == (2, 4)
    assert tensor_to_specs(t) == specs
    grid = spec_grid(t)
    assert grid.shape == (2, 32, 32, 2)
    assert as_spec_tensor(specs[1]).shape == (1, 4)


def test_invalid_specs_are_rejected():
    with pytest.raises(ValueError):
        PatchSpec(0.0, 0.0, 0.0, 4)
    with pytest.raises(ValueError):
        PatchSpec(4.0, 0.0, 0.0, 0)
    with pytest.raises(ValueError, match="explicit n"):
        spec_axes(specs_to_tensor([PatchSpec(8.0, 0, 0, 4), PatchSpec(8.0, 0, 0, 8)]))
