"""The small-upload multipart split agrees with the full parser, and hands anything unusual back
to it (None) instead of guessing."""

from __future__ import annotations

import httpx
import pytest

from core.serving.request_images import small_multipart_file

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--not-the-boundary\r\n"


def encoded(files: dict, data: dict | None = None) -> tuple[bytes, str]:
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


def test_the_file_part_is_returned_byte_for_byte():
    body, content_type = encoded({"file": ("d.png", PNG, "image/png")})
    assert small_multipart_file(body, content_type) == PNG


def test_the_file_part_is_found_after_other_fields():
    body, content_type = encoded({"file": ("d.png", PNG, "image/png")}, {"note": "hello"})
    assert body.index(b'name="note"') < body.index(b'name="file"')
    assert small_multipart_file(body, content_type) == PNG


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not multipart at all",
        b'--chb\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc\r\n',  # no end
        b'--chb\r\nContent-Disposition: form-data; name="file"abc\r\n--chb--\r\n',  # no blank
        b'--chb\r\nContent-Disposition: form-data; name="other"\r\n\r\nabc\r\n--chb--\r\n',
        b'junk--chb\r\nContent-Disposition: form-data; name="file"\r\n\r\nabc\r\n--chb--\r\n',
    ],
)
def test_anything_unusual_goes_to_the_full_parser(body):
    assert small_multipart_file(body, "multipart/form-data; boundary=chb") is None


def test_no_boundary_goes_to_the_full_parser():
    body, _ = encoded({"file": ("d.png", PNG, "image/png")})
    assert small_multipart_file(body, "multipart/form-data") is None
