"""Overlapping tiling and its inverse (pipelines.preprocessing.tiling)."""
import numpy as np
import pytest

from pipelines.preprocessing.tiling import TileGrid


def _image(shape, channels=None, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random(shape + ((channels,) if channels else ())).astype(np.float32)


@pytest.mark.parametrize("shape", [(208, 337), (97, 53), (40, 29), (1, 1), (52, 52), (53, 105)])
@pytest.mark.parametrize("blend", ["smooth", "mean"])
def test_identity_model_stitches_back_exactly(shape, blend):
    grid = TileGrid.for_image(shape, in_size=110, out_size=52)
    img = _image(shape)
    tiles = grid.extract(img)
    assert tiles.shape == (grid.n_tiles, 110, 110, 1) and tiles.dtype == np.float32
    m = grid.margin
    outputs = tiles[:, m:m + 52, m:m + 52, 0]  # an identity "model" (valid convolutions crop m)
    back = grid.stitch(outputs, blend=blend)
    assert back.shape == shape and back.dtype == np.float32
    np.testing.assert_allclose(back, img, atol=1e-6, rtol=0)


def test_identity_with_channels_and_other_geometry():
    shape = (131, 77)
    grid = TileGrid.for_image(shape, in_size=64, out_size=20, pad_mode="edge")
    img = _image(shape, channels=5)
    tiles = grid.extract(img)
    assert tiles.shape == (grid.n_tiles, 64, 64, 5)
    m = grid.margin
    assert m == 22
    back = grid.stitch(tiles[:, m:m + 20, m:m + 20, :])
    assert back.shape == shape + (5,)
    np.testing.assert_allclose(back, img, atol=1e-6)


def test_windows_match_tile_centres_and_cover_every_pixel():
    shape = (208, 337)
    grid = TileGrid.for_image(shape, 110, 52)
    img = _image(shape)
    tiles = grid.extract(img)
    win = grid.extract_windows(img)
    assert win.shape == (grid.n_tiles, 52, 52)
    np.testing.assert_array_equal(win, tiles[:, 29:81, 29:81, 0])
    cover = np.zeros(shape, int)
    for r, c in grid.positions:
        assert 0 <= r <= shape[0] - 52 and 0 <= c <= shape[1] - 52
        cover[r:r + 52, c:c + 52] += 1
    assert cover.min() >= 1
    # first window at the top-left, last at the bottom-right edge
    assert grid.positions[0] == (0, 0) and grid.positions[-1] == (208 - 52, 337 - 52)


def test_tile_count_and_positions_for_the_1_to_7_image():
    grid = TileGrid.for_image((208, 337), in_size=110, out_size=52)
    assert grid.margin == 29
    assert grid.grid_shape == (4, 7)  # ceil(208/52) = 4, ceil(337/52) = 7
    assert grid.n_tiles == 28 == len(grid.positions)
    assert grid.row_starts == (0, 52, 104, 156)
    assert grid.col_starts == tuple(int(v) for v in np.round(np.linspace(0, 285, 7)))


def test_small_image_is_padded_to_one_tile():
    grid = TileGrid.for_image((30, 20), 110, 52)
    assert grid.n_tiles == 1 and grid.positions == [(0, 0)]
    assert grid.extract_windows(np.ones((30, 20))).shape == (1, 52, 52)


@pytest.mark.parametrize("overlap", [1, 10, 51])
def test_min_overlap_is_respected_and_still_exact(overlap):
    shape = (97, 203)
    grid = TileGrid.for_image(shape, 110, 52, min_overlap=overlap)
    for starts, n in ((grid.row_starts, shape[0]), (grid.col_starts, shape[1])):
        assert starts[0] == 0 and starts[-1] == n - 52
        assert all(52 - d >= overlap for d in np.diff(starts))
    img = _image(shape)
    back = grid.stitch(grid.extract(img)[:, 29:81, 29:81, 0])
    np.testing.assert_allclose(back, img, atol=1e-6)


def test_odd_difference_and_bad_inputs_raise():
    with pytest.raises(ValueError, match="even"):
        TileGrid.for_image((208, 337), in_size=110, out_size=51)
    with pytest.raises(ValueError):
        TileGrid.for_image((208, 337), in_size=50, out_size=52)
    grid = TileGrid.for_image((208, 337), 110, 52)
    with pytest.raises(ValueError, match="shape"):
        grid.extract(np.zeros((200, 337), np.float32))
    with pytest.raises(ValueError, match="outputs"):
        grid.stitch(np.zeros((grid.n_tiles - 1, 52, 52)))
    with pytest.raises(ValueError, match="blend"):
        grid.stitch(np.zeros((grid.n_tiles, 52, 52)), blend="max")


def test_smooth_blend_of_a_constant_is_the_constant_and_seams_are_soft():
    grid = TileGrid.for_image((208, 337), 110, 52)
    const = np.full((grid.n_tiles, 52, 52), 0.37, np.float32)
    np.testing.assert_allclose(grid.stitch(const, "smooth"), 0.37, atol=1e-6)
    # tiles that disagree by a per-tile offset: with overlapping windows the smooth blend changes
    # gradually across an overlap, the mean blend jumps at window edges
    grid = TileGrid.for_image((208, 337), 110, 52, min_overlap=26)
    assert grid.grid_shape == (7, 12)
    assert min(np.diff(grid.row_starts)) <= 26 and min(np.diff(grid.col_starts)) <= 26
    rng = np.random.default_rng(1)
    offs = rng.normal(0, 1, grid.n_tiles)[:, None, None] * np.ones((1, 52, 52))
    smooth, mean = grid.stitch(offs, "smooth"), grid.stitch(offs, "mean")
    jump = lambda a: max(np.abs(np.diff(a, axis=0)).max(), np.abs(np.diff(a, axis=1)).max())
    assert jump(smooth) < 0.5 * jump(mean)
