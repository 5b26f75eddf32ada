"""Tests for core.ml.images: decoding, error messages, resizing and channel conversion."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from core.ml.images import ImageError, decode_image, encode_png, fit_to_shape


def _png_bytes(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def _png_with_header_size(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR claims width x height (CRC fixed so the header parses)."""
    data = bytearray(_png_bytes(Image.new("L", (1, 1))))
    ihdr_at = data.index(b"IHDR")
    data[ihdr_at + 4 : ihdr_at + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr_at : ihdr_at + 17]))
    data[ihdr_at + 17 : ihdr_at + 21] = struct.pack(">I", crc)
    return bytes(data)


def test_decode_rgb_png_roundtrip() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    out = decode_image(encode_png(arr))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)


def test_decode_grayscale_keeps_one_channel() -> None:
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = decode_image(_png_bytes(Image.fromarray(arr)))
    assert out.shape == (3, 4, 1)
    np.testing.assert_array_equal(out[:, :, 0], arr)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA"])
def test_decode_other_modes_become_rgb(mode: str) -> None:
    img = Image.new("RGB", (4, 3), (200, 10, 30)).convert(mode)
    out = decode_image(_png_bytes(img))
    assert out.shape == (3, 4, 3)


def test_decode_jpeg() -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 60, 30)).save(buffer, format="JPEG")
    out = decode_image(buffer.getvalue())
    assert out.shape == (16, 16, 3)
    assert abs(int(out[8, 8, 0]) - 120) < 8


def test_zero_bytes_is_empty_file() -> None:
    with pytest.raises(ImageError, match="empty file") as info:
        decode_image(b"")
    assert info.value.kind == "empty"


def test_text_is_not_an_image() -> None:
    with pytest.raises(ImageError, match="not an image") as info:
        decode_image(b"hello, this is certainly not a PNG")
    assert info.value.kind == "not_image"


def test_truncated_png_is_refused() -> None:
    rng = np.random.default_rng(1)
    data = encode_png(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="truncated") as info:
        decode_image(data[: len(data) // 2])
    assert info.value.kind == "corrupt"


def test_huge_header_is_refused_before_decoding() -> None:
    data = _png_with_header_size(10_000, 10_000)
    with pytest.raises(ImageError, match=r"too large: 10000x10000") as info:
        decode_image(data)
    assert info.value.kind == "too_large"


def test_pixel_limit_is_configurable() -> None:
    data = encode_png(np.zeros((100, 100), dtype=np.uint8))
    assert decode_image(data, max_pixels=10_000).shape == (100, 100, 1)
    with pytest.raises(ImageError, match="limit 9999"):
        decode_image(data, max_pixels=9_999)


def test_fit_to_shape_resizes_and_converts_channels() -> None:
    gray = np.full((10, 6, 1), 77, dtype=np.uint8)
    rgb = fit_to_shape(gray, (4, 5, 3))
    assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
    assert (rgb == 77).all()
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[..., 1] = 255
    back = fit_to_shape(colour, (8, 8, 1))
    assert back.shape == (8, 8, 1)
    assert 140 < int(back[0, 0, 0]) < 160  # ITU-R 601 luma of pure green is ~150


def test_fit_to_shape_returns_an_image_that_already_fits_unchanged() -> None:
    image = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert fit_to_shape(image, (4, 4, 3)) is image
    assert fit_to_shape(image.astype(np.float32), (4, 4, 3)).dtype == np.uint8


def test_encode_png_refuses_bad_shape() -> None:
    with pytest.raises(ImageError, match="cannot encode"):
        encode_png(np.zeros((4, 4, 2), dtype=np.uint8))
