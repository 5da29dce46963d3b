"""Report photos: the type read from the file's first bytes, a size limit, and
storage under a random name outside any folder the web server serves."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ...errors import ConfigError, InvalidInput

log = logging.getLogger("edufleet.collector.web.uploads")

_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"mif1", b"msf1", b"heim", b"heis")
_GENERIC_TYPES = ("", "application/octet-stream")
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/heif": "image/heic",
}


@dataclass(frozen=True)
class StoredPhoto:
    name: str
    content_type: str
    size: int


def sniff_image(head: bytes) -> tuple[str, str] | None:
    """The (content type, extension) of a JPEG, PNG, WebP or HEIC file, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image/heic", "heic"
    return None


def check_photo(data: bytes, declared_type: str, *, max_bytes: int) -> tuple[str, str]:
    """Refuse a photo that is too big, is not an image, or claims another type."""
    if len(data) > max_bytes:
        raise InvalidInput(
            f"photo of {len(data):,} bytes exceeds the {max_bytes:,}-byte limit",
            field="photo_size",
        )
    sniffed = sniff_image(data[:32])
    if sniffed is None:
        raise InvalidInput(
            "photo is not a JPEG, PNG, WebP or HEIC image", field="photo_type"
        )
    declared = declared_type.split(";", maxsplit=1)[0].strip().lower()
    declared = _ALIASES.get(declared, declared)
    if declared not in _GENERIC_TYPES and declared != sniffed[0]:
        raise InvalidInput(
            f"photo claims to be {declared!r} but its content is {sniffed[0]!r}",
            field="photo_type",
        )
    return sniffed


def store_photo(
    data: bytes, declared_type: str, *, upload_dir: str, max_bytes: int
) -> StoredPhoto:
    """Check a photo and write it under ``upload_dir`` with a generated name."""
    content_type, extension = check_photo(data, declared_type, max_bytes=max_bytes)
    now = datetime.now(UTC)
    relative = Path(f"{now:%Y}/{now:%m}/{secrets.token_hex(16)}.{extension}")
    target = Path(upload_dir) / relative
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    except OSError as exc:
        raise ConfigError(
            f"cannot store a photo under {upload_dir!r}: {exc.strerror}; "
            "set EDUFLEET_UPLOAD_DIR to a writable folder"
        ) from exc
    log.info("stored a %s photo of %d bytes as %s", content_type, len(data), relative)
    return StoredPhoto(name=str(relative), content_type=content_type, size=len(data))
