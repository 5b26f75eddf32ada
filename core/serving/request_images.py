"""Turn a predict request's body into one image of the model's input shape, or a 4xx naming why."""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse

from core.ml.images import ImageError, fit_to_shape, load_image

# Bodies above this are parsed and decoded on a worker thread so they do not stall the loop...
INLINE_DECODE_BYTES = 64 * 1024
# ...and so are images whose header declares more pixels than this, however small the file:
# a 3 KB PNG can declare 25 megapixels and take a third of a second to decode.
INLINE_DECODE_PIXELS = 512 * 512
# What the API accepts, as Pillow detects it from the bytes (not the name or content type).
ACCEPTED_FORMATS = ("PNG", "JPEG")
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # their first bytes
RAW_IMAGE_TYPES = ("image/png", "image/jpeg", "application/octet-stream")
# HTTP status per ImageError kind; empty, truncated or corrupt bytes are a plain 400.
IMAGE_ERROR_STATUS = {"too_large": 413, "not_image": 415}


class InputError(Exception):
    """A request body the API refuses: HTTP status and a message naming the problem."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class Upload:
    """The uploaded image as uint8 of the model's shape; `png` is the upload itself when it is a
    PNG of exactly these pixels (stored as the input as it came, instead of encoded again)."""

    image: np.ndarray
    png: bytes | None = None


async def image_from_request(
    request: Request, shape: tuple[int, int, int], *, max_pixels: int
) -> Upload:
    """The uploaded image of `shape`: multipart `file`, raw image bytes, or JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _decode(await _multipart_file(request), shape, max_pixels)
    if content_type in RAW_IMAGE_TYPES:
        return await _decode(await request.body(), shape, max_pixels)
    if content_type == "application/json" or content_type.endswith("+json"):
        body = await request.body()
        large = len(body) > INLINE_DECODE_BYTES
        payload = await asyncio.to_thread(_parse_json, body) if large else _parse_json(body)
        return await _from_json(payload, shape, max_pixels, large=large)
    raise InputError(
        415,
        f"unsupported content type {content_type or 'none'!r}: send multipart/form-data with a "
        "'file' field, image/png or image/jpeg bytes, or JSON with 'image_base64' or 'pixels'",
    )


async def _multipart_file(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) <= INLINE_DECODE_BYTES:
        # A small, plain upload is split here; anything else (and every malformed body, for
        # its error) goes through the full parser, which reads the body kept by `body()`.
        found = small_multipart_file(await request.body(), request.headers["content-type"])
        if found is not None:
            return found
    form = await request.form(max_files=1, max_fields=8)
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InputError(422, "multipart body needs a file field named 'file'")
        return await upload.read()
    finally:
        await form.close()


def small_multipart_file(body: bytes, content_type: str) -> bytes | None:
    """The `file` part of a well-formed multipart body, or None when the body is anything else
    (no boundary, a part without headers, no `file` part): the full parser then answers."""
    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        return None
    parts = body.split(b"--" + boundary)
    if len(parts) < 3 or parts[0] or not parts[-1].startswith(b"--"):
        return None
    for part in parts[1:-1]:
        if not (part.startswith(b"\r\n") and part.endswith(b"\r\n")):
            return None
        head, blank, content = part[2:-2].partition(b"\r\n\r\n")
        if not blank:
            return None
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-disposition":
                if parse_options_header(value.strip())[1].get(b"name") == b"file":
                    return content
    return None


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(400, f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InputError(400, "body is not valid JSON: arrays or objects nested too deep") from None


async def _from_json(
    payload: Any, shape: tuple[int, int, int], max_pixels: int, *, large: bool
) -> Upload:
    if not isinstance(payload, dict) or len({"image_base64", "pixels"} & payload.keys()) != 1:
        raise InputError(422, "JSON body needs exactly one of 'image_base64' or 'pixels'")
    if "pixels" in payload:
        if large:
            return Upload(await asyncio.to_thread(pixels_to_image, payload["pixels"], shape))
        return Upload(pixels_to_image(payload["pixels"], shape))
    return await _decode(base64_bytes(payload["image_base64"]), shape, max_pixels)


def base64_bytes(value: Any) -> bytes:
    """Decode a base64 string (a `data:image/...;base64,` prefix is allowed)."""
    if not isinstance(value, str):
        raise InputError(422, "image_base64 must be a string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(422, f"image_base64 is not valid base64: {exc}") from None


def pixels_to_image(value: Any, shape: tuple[int, int, int]) -> np.ndarray:
    """A nested list of 0..255 numbers, HxW (grayscale models) or HxWxC, as uint8 of `shape`."""
    height, width, channels = shape
    expected = f"{height}x{width}x{channels}" + (f" or {height}x{width}" if channels == 1 else "")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InputError(422, "pixels must be a rectangular nested array of numbers") from None
    if arr.ndim == 2 and channels == 1:
        arr = arr[:, :, None]
    if arr.shape != tuple(shape):
        got = "x".join(str(d) for d in arr.shape) or "a scalar"
        raise InputError(
            422, f"pixels have the wrong shape: this model takes {expected} (got {got})"
        )
    if not np.isfinite(arr).all():
        raise InputError(422, "pixels contain NaN, infinite or null values")
    low, high = float(arr.min()), float(arr.max())
    if low < 0 or high > 255:
        raise InputError(422, f"pixel values must lie in 0..255 (got {low:g}..{high:g})")
    return np.rint(arr).astype(np.uint8)


async def _decode(data: bytes, shape: tuple[int, int, int], max_pixels: int) -> Upload:
    """Decode on the loop only what is quick: a small file whose header declares a small image
    (the header is read once; the pixels are decoded from that same opened file)."""
    if len(data) > INLINE_DECODE_BYTES:
        return await asyncio.to_thread(decode_to_shape, data, shape, max_pixels)
    img = open_checked(data, max_pixels)
    if img.width * img.height > INLINE_DECODE_PIXELS:
        return await asyncio.to_thread(_pixels_to_shape, img, data, shape, max_pixels)
    return _pixels_to_shape(img, data, shape, max_pixels)


def open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """The image opened from its header, no pixel decoded yet (Pillow opens lazily): anything
    but PNG or JPEG is a 415, more than `max_pixels` a 413, an unreadable header a 400."""
    if not data:
        raise InputError(400, "empty file: no bytes to decode")
    try:
        img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        found = detected_format(data)
        if found:
            raise InputError(415, f"{found} images are not accepted: send PNG or JPEG") from None
        if data.startswith(SIGNATURES):
            raise InputError(400, "corrupt or truncated image: its header cannot be read") from None
        raise InputError(415, "not an image: the bytes are not a PNG or JPEG file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(400, f"corrupt or truncated image: {exc}") from None
    width, height = img.size
    if width * height > max_pixels:
        img.close()
        raise InputError(
            413, f"image too large: {width}x{height} = {width * height} pixels (limit {max_pixels})"
        )
    return img


def detected_format(data: bytes) -> str | None:
    """The format Pillow recognises in `data` from its header alone (for the refusal's message)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.format
    except Exception:  # any reader's failure only means the format has no name to give
        return None


def decode_to_shape(data: bytes, shape: tuple[int, int, int], max_pixels: int) -> Upload:
    """Decode PNG/JPEG bytes and fit them to `shape`, as an InputError with a status on failure."""
    return _pixels_to_shape(open_checked(data, max_pixels), data, shape, max_pixels)


def _pixels_to_shape(
    img: Image.Image, data: bytes, shape: tuple[int, int, int], max_pixels: int
) -> Upload:
    try:
        with img:
            pixels = load_image(img, max_pixels=max_pixels)
            fitted = fit_to_shape(pixels, shape)
            # Not resized, no channel or mode change, no bulky extra chunks: the upload is the
            # input, byte for byte a PNG of `fitted`.
            same = fitted is pixels and img.format == "PNG" and img.mode in ("L", "RGB")
    except ImageError as exc:
        raise InputError(IMAGE_ERROR_STATUS.get(exc.kind, 400), str(exc)) from None
    return Upload(fitted, data if same and len(data) <= fitted.nbytes + 1024 else None)


class BodyTooLarge(Exception):
    """The request body passed the upload limit while it was being read."""


class BodyLimitMiddleware:
    """Refuses bodies over `limit` bytes: from Content-Length before reading, else mid-stream."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            response = too_large_response(self.limit, f"{int(declared)} bytes")
            return await response(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge()
            return message

        return await self.app(scope, limited_receive, send)


def too_large_response(limit: int, size: str) -> JSONResponse:
    detail = f"request body too large: {size} over the limit of {limit} bytes"
    return JSONResponse({"detail": detail}, status_code=413, headers={"Connection": "close"})
