"""The one image loader (pipelines.reading.images): TIFF, PNG and JPEG, 8- and 16-bit, colour to
luma, which file wins for one name, and a clear DataError naming the file for every bad input."""
import numpy as np
import pytest
import tifffile
from PIL import Image

from pipelines.common.errors import DataError
from pipelines.reading.hdc import load_tiff
from pipelines.reading.images import find_image, image_files, load_image, pillow_array


def ramp16(shape=(60, 90)):
    """Every 16-bit value class: 0, full scale, values above 255 and odd low bits."""
    a = (np.arange(shape[0] * shape[1], dtype=np.uint64) * 7919 % 65536).astype(np.uint16).reshape(shape)
    a[0, 0], a[0, 1] = 0, 65535
    return a


def test_16_bit_tiff_round_trip(tmp_path):
    a = ramp16()
    tifffile.imwrite(tmp_path / "a.tif", a, photometric="minisblack")
    out = load_image(tmp_path / "a.tif", expect_shape=a.shape)
    assert out.dtype == np.float32 and out.shape == a.shape
    np.testing.assert_array_equal(out, a.astype(np.float32) / np.float32(65535))
    assert out[0, 0] == 0 and out[0, 1] == 1
    assert load_tiff is load_image  # the old name keeps working


def test_big_endian_and_8_bit_tiff(tmp_path):
    a = ramp16()
    tifffile.imwrite(tmp_path / "be.tiff", a, byteorder=">", photometric="minisblack")
    np.testing.assert_array_equal(load_image(tmp_path / "be.tiff", None), a / np.float32(65535))
    tifffile.imwrite(tmp_path / "8.tif", (a >> 8).astype(np.uint8), photometric="minisblack")
    np.testing.assert_array_equal(load_image(tmp_path / "8.tif", None), (a >> 8).astype(np.float32) / 255)
    tifffile.imwrite(tmp_path / "1.tif", a[..., None], photometric="minisblack")  # reads back (h, w, 1)
    np.testing.assert_array_equal(load_image(tmp_path / "1.tif", None), a / np.float32(65535))


def test_8_bit_png_round_trip(tmp_path):
    a = (ramp16() >> 8).astype(np.uint8)
    a[0, 0], a[0, 1] = 0, 255
    Image.fromarray(a, mode="L").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png", expect_shape=None)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, a.astype(np.float32) / np.float32(255))  # / 255, not / 65535
    assert out[0, 1] == 1


def test_16_bit_png_round_trip(tmp_path):
    a = ramp16()
    Image.fromarray(a).save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode in ("I;16", "I")  # 16-bit gray: "I;16" since Pillow 10.3, "I" before
    out = load_image(tmp_path / "a.png", expect_shape=None)
    np.testing.assert_array_equal(out, a.astype(np.float32) / np.float32(65535))
    assert out.max() == 1 and (out * 65535 > 255).any()


def test_pillow_int32_mode_is_16_bit_data():
    a = ramp16((4, 5)).astype(np.int32)
    np.testing.assert_array_equal(pillow_array(Image.fromarray(a, mode="I")), a.astype(np.uint16))
    assert pillow_array(Image.fromarray(a, mode="I")).dtype == np.uint16
    with pytest.raises(ValueError, match="not 16-bit data"):
        pillow_array(Image.fromarray(a + 70000, mode="I"))


def test_jpeg_round_trip(tmp_path):
    yy, xx = np.mgrid[0:64, 0:96]
    a = np.rint(40 + 180 * (xx / 95) * (0.5 + 0.5 * yy / 63)).astype(np.uint8)  # smooth: JPEG keeps it
    Image.fromarray(a, mode="L").save(tmp_path / "a.jpg", quality=95)
    out = load_image(tmp_path / "a.jpg", expect_shape=(64, 96))
    assert out.dtype == np.float32 and out.shape == (64, 96)
    assert np.abs(out * 255 - a).mean() < 1.0 and np.abs(out * 255 - a).max() <= 4
    Image.fromarray(np.stack([a] * 3, -1), mode="RGB").save(tmp_path / "c.JPEG", quality=95)
    assert np.abs(load_image(tmp_path / "c.JPEG", None) * 255 - a).mean() < 1.0  # colour JPEG, upper case


def test_colour_is_converted_by_luma_and_alpha_ignored(tmp_path):
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [90, 90, 90]]], np.uint8)
    expect = np.array([[0.299, 0.587, 0.114, 90 / 255]], np.float32)
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "rgb.png")
    np.testing.assert_allclose(load_image(tmp_path / "rgb.png", None), expect, atol=1e-6)
    rgba = np.concatenate([rgb, np.array([[[255], [0], [10], [255]]], np.uint8)], -1)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(load_image(tmp_path / "rgba.png", None), expect, atol=1e-6)
    gray_alpha = np.stack([rgb[..., 0], rgb[..., 1]], -1)
    Image.fromarray(gray_alpha, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_image(tmp_path / "la.png", None), rgb[..., 0] / np.float32(255))
    rgb16 = rgb.astype(np.uint16) * 257 + 1  # 16-bit colour keeps its precision
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb16, photometric="rgb")
    np.testing.assert_allclose(load_image(tmp_path / "rgb16.tif", None),
                               (rgb16 @ np.array([0.299, 0.587, 0.114])) / 65535, atol=1e-6)


def test_palette_1_bit_and_cmyk(tmp_path):
    a = np.array([[0, 128, 255, 64]], np.uint8)
    Image.fromarray(a, mode="L").convert("P").save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as im:
        assert im.mode == "P"
    np.testing.assert_allclose(load_image(tmp_path / "p.png", None), a / 255, atol=1e-6)
    Image.fromarray(a > 100).save(tmp_path / "b.png")
    np.testing.assert_array_equal(load_image(tmp_path / "b.png", None), np.array([[0, 1, 1, 0]], np.float32))
    Image.new("CMYK", (8, 8), (0, 0, 0, 0)).save(tmp_path / "cmyk.jpg")  # CMYK JPEG: white paper
    assert np.allclose(load_image(tmp_path / "cmyk.jpg", None), 1, atol=2 / 255)


def test_real_circulating_examples_load(fixtures_dir):
    example = load_image(fixtures_dir / "scorer" / "example.png")  # RGBA, R = G = B
    with Image.open(fixtures_dir / "scorer" / "example.png") as im:
        assert im.mode == "RGBA"
        gray = np.asarray(im)[..., 0]
    np.testing.assert_allclose(example * 255, gray, atol=1e-3)
    sharp = load_image(fixtures_dir / "sharp" / "cam01_focusStep_3_timesR_size_30_sample_0001.jpg")
    assert sharp.shape == (1460, 2360) and 0 <= sharp.min() < 0.3 < 0.6 < sharp.max() <= 1


# ------------------------------------------------------------------ bad files

@pytest.fixture
def png_file(tmp_path):
    path = tmp_path / "focusStep_5_timesR_size_30_sample_0001.png"
    Image.fromarray((ramp16((1460, 2360)) >> 8).astype(np.uint8), mode="L").save(path)
    return path


def test_truncated_png(png_file):
    png_file.write_bytes(png_file.read_bytes()[:5000])
    with pytest.raises(DataError, match="unreadable or truncated PNG") as e:
        load_image(png_file)
    assert str(e.value).startswith(f"{png_file}: ")


def test_text_file_named_png_or_jpg(tmp_path):
    for name, kind in (("x.png", "PNG"), ("x.jpg", "JPEG"), ("x.jpeg", "JPEG")):
        (tmp_path / name).write_text("hello")
        with pytest.raises(DataError, match=rf"x\.{name[2:]}: unreadable or truncated {kind}"):
            load_image(tmp_path / name)


def test_wrong_size_png(png_file, tmp_path):
    assert load_image(png_file).shape == (1460, 2360)
    small = tmp_path / "small.png"
    Image.fromarray(np.zeros((100, 200), np.uint8), mode="L").save(small)
    with pytest.raises(DataError, match=r"small\.png: expected 2360 x 1460 \(w x h\), found 200 x 100"):
        load_image(small)


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match=r"nope\.png: file not found"):
        load_image(tmp_path / "nope.png")
    Image.fromarray(np.zeros((4, 4), np.uint8), mode="L").save(tmp_path / "x.bmp")
    with pytest.raises(DataError, match=r"x\.bmp: not a supported image type"):
        load_image(tmp_path / "x.bmp")
    tifffile.imwrite(tmp_path / "x.tif", np.zeros((4, 4), np.int16))
    with pytest.raises(DataError, match=r"x\.tif: expected an 8- or 16-bit image, found int16"):
        load_image(tmp_path / "x.tif", None)


# ------------------------------------------------------------------ one file per name

def test_one_image_per_name_tiff_first(tmp_path):
    tiny = np.zeros((2, 2), np.uint8)
    for name in ("b.png", "b.jpg", "a.png", "a.tif", "c.jpeg", "d.TIF", "notes.txt", "e.gif"):
        path = tmp_path / name
        if name.endswith((".tif", ".TIF")):
            tifffile.imwrite(path, tiny)
        elif name.endswith(".txt"):
            path.write_text("x")
        else:
            Image.fromarray(tiny, mode="L").save(path, format="GIF" if name.endswith("gif") else None)
    assert [p.name for p in image_files(tmp_path)] == ["a.tif", "b.png", "c.jpeg", "d.TIF"]
    assert find_image(tmp_path, "a").name == "a.tif"
    assert find_image(tmp_path, "b").name == "b.png"
    assert find_image(tmp_path, "d").name == "d.TIF"
    assert find_image(tmp_path, "e") is None and find_image(tmp_path / "absent", "a") is None
