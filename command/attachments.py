"""A note's photo: taken as base64, its type read from its bytes, stored by its SHA-256.

The logged note carries ``photo: {sha256, media_type, size}``, so the hash chain covers the
picture; the bytes live in ``attachments`` (one row per site and hash), written in the note's
own transaction, and are served to the site's readers (``GET /api/sites/{site}/attachments/
{sha256}``). The client's word on the type is never taken: a JPEG, PNG or WebP is recognised
by its structure, and anything else is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from gis.errors import FieldError, InvalidInput, NotFound, PayloadTooLarge, UnsupportedFormat
from gis.storage.tables import AttachmentRow

#: The largest photo taken, decoded.
MAX_PHOTO_BYTES = 2 * 1024 * 1024
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
    media_type = sniff(content)
    if media_type is None:
        raise UnsupportedFormat(
            "the photo is not a JPEG, PNG or WebP picture (read from its bytes, whatever it is "
            "called)",
            errors=[FieldError(field, "a JPEG, PNG or WebP picture")],
        )
    return Photo(content, media_type, hashlib.sha256(content).hexdigest())


def _too_large(field: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a photo may be {MAX_PHOTO_BYTES // (1024 * 1024)} MB at most; make it smaller",
        errors=[FieldError(field, f"larger than {MAX_PHOTO_BYTES} bytes")],
    )


def sniff(content: bytes) -> str | None:
    """The picture's media type, from its structure (not only its first bytes), or None."""
    if content.startswith(b"\xff\xd8\xff") and _jpeg_holds(content):
        return "image/jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n") and _png_holds(content):
        return "image/png"
    if (
        len(content) >= 20
        and content[:4] == b"RIFF"
        and content[8:12] == b"WEBP"
        and struct.unpack("<I", content[4:8])[0] + 8 == len(content)
        and content[12:16] in (b"VP8 ", b"VP8L", b"VP8X")
    ):
        return "image/webp"
    return None


def _jpeg_holds(content: bytes) -> bool:
    """Marker segments from the start up to the scan, then an end-of-image marker."""
    at = 2
    while at + 4 <= len(content):
        if content[at] != 0xFF:
            return False
        marker = content[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            at += 2
            continue
        length = int.from_bytes(content[at + 2 : at + 4], "big")
        if length < 2:
            return False
        if marker == 0xDA:  # start of scan: the entropy-coded data runs to the end marker
            return b"\xff\xd9" in content[at + 2 + length :]
        at += 2 + length
    return False


def _png_holds(content: bytes) -> bool:
    """IHDR first, every chunk's CRC right, IEND last."""
    at, first = 8, True
    while at + 12 <= len(content):
        length = int.from_bytes(content[at : at + 4], "big")
        kind = content[at + 4 : at + 8]
        end = at + 12 + length
        if end > len(content):
            return False
        if first and (kind != b"IHDR" or length != 13):
            return False
        crc = int.from_bytes(content[end - 4 : end], "big")
        if zlib.crc32(content[at + 4 : end - 4]) != crc:
            return False
        if kind == b"IEND":
            return True
        at, first = end, False
    return False


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
