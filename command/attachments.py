"""A note's photo: taken as base64, its type read from its bytes, stored by its SHA-256.

The logged note carries ``photo: {sha256, media_type, size}``, so the hash chain covers the
picture; the bytes live in ``attachments`` (one row per site and hash), written in the note's
own transaction, and are served to the site's readers (``GET /api/sites/{site}/attachments/
{sha256}``). The client's word on the type is never taken: a JPEG, PNG or WebP is recognised
by its structure (walked here: markers, chunks and their CRCs, the RIFF size) and opened by
Pillow (``verify``; a JPEG decoded at an eighth of its size), and anything else is refused
(415). A picture larger than :data:`MAX_SIDE_PX` a side or :data:`MAX_PIXELS` in all (a
decompression bomb for the browsers that show it), or with bytes after its end (a polyglot:
a ZIP or a page after the PNG's IEND) is 422 naming the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput, NotFound, PayloadTooLarge, UnsupportedFormat
from gis.storage.tables import AttachmentRow

#: The largest photo taken, decoded.
MAX_PHOTO_BYTES = 2 * 1024 * 1024
#: The widest or highest photo taken, in pixels; and the most pixels in all.
MAX_SIDE_PX = 8192
MAX_PIXELS = 40_000_000
_FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG", "image/webp": "WEBP"}
_DATA_URL = re.compile(r"data:[\w.+/-]*(?:;[\w=.+-]+)*;base64,", re.ASCII)
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Photo:
    content: bytes
    media_type: str
    sha256: str

    def as_data(self) -> dict[str, Any]:
        """What the logged note says of it."""
        return {"sha256": self.sha256, "media_type": self.media_type, "size": len(self.content)}


def decode_photo(text: str, *, field: str = "photo") -> Photo:
    """A photo sent as base64 (or a ``data:`` URL): 413 over :data:`MAX_PHOTO_BYTES`, 415
    unless its bytes are a JPEG, PNG or WebP, 422 when it is not base64."""
    prefix = _DATA_URL.match(text)
    body = "".join(
        text[prefix.end() if prefix else 0 :].split()
    )  # line breaks of a MIME-style encoder
    if len(body) > (MAX_PHOTO_BYTES + 2) // 3 * 4:
        raise _too_large(field)
    try:
        content = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            "the photo is not base64", errors=[FieldError(field, "base64 of a JPEG, PNG or WebP")]
        ) from None
    if len(content) > MAX_PHOTO_BYTES:
        raise _too_large(field)
    media_type = _kind(content)
    end = _end(content, media_type) if media_type else None
    if media_type is None or end is None:
        raise _not_a_picture(field)
    _open(content[:end], media_type, field)  # the picture first: 415 when it is none
    if end < len(content):
        raise InvalidInput(
            f"the photo has {len(content) - end} bytes after the end of its picture: send the "
            "picture alone",
            errors=[FieldError(field, "bytes after the end of the picture")],
        )
    return Photo(content, media_type, hashlib.sha256(content).hexdigest())


def _not_a_picture(field: str) -> UnsupportedFormat:
    return UnsupportedFormat(
        "the photo is not a JPEG, PNG or WebP picture (read from its bytes, whatever it is called)",
        errors=[FieldError(field, "a JPEG, PNG or WebP picture")],
    )


def _open(content: bytes, media_type: str, field: str) -> None:
    """Pillow reads the picture as its kind: 415 unless it holds, 422 when too large."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content), formats=[_FORMATS[media_type]]) as image:
                width, height = image.size
                if (
                    width > MAX_SIDE_PX
                    or height > MAX_SIDE_PX
                    or width * height > MAX_PIXELS
                    or width < 1
                    or height < 1
                ):
                    raise _too_many_pixels(field, f"{width} x {height} pixels")
                image.verify()
            if media_type == "image/jpeg":  # verify reads no scan: decode it, small
                with Image.open(io.BytesIO(content), formats=["JPEG"]) as image:
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = Image.MAX_IMAGE_PIXELS or MAX_PIXELS
        raise _too_many_pixels(field, f"over {limit} pixels in all") from None
    except InvalidInput:
        raise
    except Exception:  # Pillow's errors for a broken picture are of many kinds
        raise _not_a_picture(field) from None


def _too_many_pixels(field: str, size: str) -> InvalidInput:
    return InvalidInput(
        f"the photo is {size}; at most {MAX_SIDE_PX} pixels a side and "
        f"{MAX_PIXELS // 1_000_000} MP are taken: make it smaller",
        errors=[FieldError(field, f"larger than {MAX_SIDE_PX} px a side or {MAX_PIXELS} px")],
    )


def _too_large(field: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a photo may be {MAX_PHOTO_BYTES // (1024 * 1024)} MB at most; make it smaller",
        errors=[FieldError(field, f"larger than {MAX_PHOTO_BYTES} bytes")],
    )


def sniff(content: bytes) -> str | None:
    """The picture's media type, from its structure (its end where its bytes end, Pillow
    reading it within the pixel caps), or None."""
    media_type = _kind(content)
    if media_type is None or _end(content, media_type) != len(content):
        return None
    try:
        _open(content, media_type, "photo")
    except (InvalidInput, UnsupportedFormat):
        return None
    return media_type


def _kind(content: bytes) -> str | None:
    """The kind its first bytes claim."""
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if len(content) >= 20 and content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def _end(content: bytes, media_type: str) -> int | None:
    """Where the picture's structure ends (bytes after it are not the picture's), or None
    when it does not hold."""
    if media_type == "image/jpeg":
        return _jpeg_end(content)
    if media_type == "image/png":
        return _png_end(content)
    size = int.from_bytes(content[4:8], "little") + 8
    if size > len(content) or size < 20 or content[12:16] not in (b"VP8 ", b"VP8L", b"VP8X"):
        return None
    return size


def _jpeg_end(content: bytes) -> int | None:
    """Marker segments from the start; after each scan its entropy-coded data, up to the next
    marker (a progressive picture has several scans); the end just past end-of-image."""
    at, size = 2, len(content)
    while at + 2 <= size:
        if content[at] != 0xFF:
            return None
        marker = content[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0xD9:  # end of image
            return at + 2
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        if marker in (0x00, 0xD8) or at + 4 > size:
            return None
        length = int.from_bytes(content[at + 2 : at + 4], "big")
        if length < 2 or at + 2 + length > size:
            return None
        at += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data, where 0xFF is stuffed
            while True:
                at = content.find(b"\xff", at)
                if at < 0 or at + 1 >= size:
                    return None
                following = content[at + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    at += 2
                elif following == 0xFF:
                    at += 1
                else:
                    break
    return None


def _png_end(content: bytes) -> int | None:
    """IHDR first, every chunk's CRC right; the end just past IEND."""
    at, first = 8, True
    while at + 12 <= len(content):
        length = int.from_bytes(content[at : at + 4], "big")
        kind = content[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(content):
            return None
        if first and (kind != b"IHDR" or length != 13):
            return None
        crc = int.from_bytes(content[end - 4 : end], "big")
        if zlib.crc32(content[at + 4 : end - 4]) != crc:
            return None
        if kind == b"IEND":
            return end
        at, first = end, False
    return None


def store(session: Session, site_id: str, photo: Photo, *, by: str, at: datetime) -> None:
    """In the note's transaction; a photo already stored at the site is kept as it is."""
    values = {
        "site_id": site_id,
        "sha256": photo.sha256,
        "media_type": photo.media_type,
        "size": len(photo.content),
        "content": photo.content,
        "created_at": at,
        "created_by": by,
    }
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(AttachmentRow).values(**values).on_conflict_do_nothing())


def load(session: Session, site_id: str, sha256: str) -> tuple[bytes, str]:
    """The photo's bytes and media type; 404 unknown at the site."""
    if not _SHA256.fullmatch(sha256):
        raise NotFound(
            "an attachment is named by its SHA-256 (64 hex digits)",
            errors=[FieldError("sha256", "64 lower-case hex digits")],
        )
    row = session.execute(
        select(AttachmentRow.content, AttachmentRow.media_type).where(
            AttachmentRow.site_id == site_id, AttachmentRow.sha256 == sha256
        )
    ).first()
    if row is None:
        raise NotFound(
            f"no attachment {sha256} at site {site_id}",
            errors=[FieldError("sha256", "unknown")],
        )
    return bytes(row[0]), str(row[1])
