"""Image bytes to uint8 arrays and back: decoding with clear errors, resizing, channel changes."""

from __future__ import annotations

import hashlib
import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

# We enforce our own pixel limit before decoding, so PIL's own bomb guard is switched off:
# it would otherwise surface as a warning or a PIL-specific exception instead of ImageError.
Image.MAX_IMAGE_PIXELS = None


def image_digest(image: np.ndarray) -> str:
    """The identity of an image's pixels (40 hex characters): the same for a served input, the
    PNG stored for it read back, and the dataset image it copies (all uint8 HxWxC)."""
    pixels = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha1(pixels.tobytes(), usedforsecurity=False).hexdigest()


def image_digests(images: np.ndarray) -> set[str]:
    """`image_digest` of each image of a batch (N, H, W, C)."""
    return {image_digest(image) for image in images}


class ImageError(ValueError):
    """An image could not be decoded or converted; the message names the problem.

    `kind` says which problem, for callers that answer differently (an HTTP status):
    "empty", "not_image", "too_large", "corrupt" or "shape".
    """

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        super().__init__(message)
        self.kind = kind


def decode_image(data: bytes, *, max_pixels: int = 25_000_000) -> np.ndarray:
    """Decode PNG/JPEG bytes to a uint8 array HxWxC (C=1 for grayscale, else 3 RGB)."""
    if not data:
        raise ImageError("empty file: no bytes to decode", "empty")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("not an image: the bytes are not a PNG or JPEG file", "not_image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}", "corrupt") from exc
    with img:
        return load_image(img, max_pixels=max_pixels)


def load_image(img: Image.Image, *, max_pixels: int = 25_000_000) -> np.ndarray:
    """The pixels of an opened (not yet decoded) image as uint8 HxWxC, its size checked first."""
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"image too large: {width}x{height} = {width * height} pixels (limit {max_pixels})",
            "too_large",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}", "corrupt") from exc
    return _to_array(img)


def _to_array(img: Image.Image) -> np.ndarray:
    if img.mode in ("L", "1", "I;16", "I", "F"):
        gray = img.convert("L") if img.mode != "L" else img
        return np.asarray(gray, dtype=np.uint8)[:, :, None].copy()
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def fit_to_shape(img: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Resize an HxWxC uint8 image (bilinear) and convert its channels (1<->3) to match `shape`."""
    height, width, channels = shape
    if channels not in (1, 3):
        raise ImageError(f"target channels must be 1 or 3 (got {channels})", "shape")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        raise ImageError(f"expected an HxWx1 or HxWx3 image (got shape {arr.shape})", "shape")
    if arr.dtype == np.uint8 and arr.shape == (height, width, channels):
        return arr  # already fits: no resize, no copy (the serving hot path)
    arr = np.clip(arr, 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    pil = pil.convert("L" if channels == 1 else "RGB")
    if pil.size != (width, height):
        pil = pil.resize((width, height), Image.Resampling.BILINEAR)
    out = np.asarray(pil, dtype=np.uint8)
    return (out[:, :, None] if out.ndim == 2 else out).copy()


def encode_png(img: np.ndarray) -> bytes:
    """Encode an HxW, HxWx1 or HxWx3 uint8 array as PNG bytes."""
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ImageError(f"cannot encode an array of shape {arr.shape} as PNG", "shape")
    buffer = io.BytesIO()
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
