"""Image size from the file header, without decoding pixels.

`read_header(path)` returns the displayed size (after EXIF orientation) or the reason the
file cannot be used. PNG, JPEG, WebP, GIF and BMP are parsed here directly: a few small
reads per file (the head, the tail, and a seek or two), which is what makes a cold scan of
thousands of images fast. TIFF goes through Pillow's lazy `Image.open`, which reads only the
header as long as nobody calls `load()`. Anything else is "not an image": Pillow would guess
formats without a signature (TGA) from random bytes.

Truncation is found from the container alone: PNG ends with IEND, JPEG's entropy-coded data
ends with EOI (FFD9), WebP's RIFF header states its length, GIF's blocks end with a trailer,
BMP's pixel array has a known length, TIFF's strips have known offsets. No pixel is decoded.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import IO

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".gif", ".tif", ".tiff"})

HEAD_BYTES = 16384
TAIL_BYTES = 64
# Pillow refuses to open images above twice its MAX_IMAGE_PIXELS (a decompression bomb).
MAX_PIXELS = 2 * 89_478_485

TRUNCATED = "truncated image"
NOT_AN_IMAGE = "not an image"
ZERO_BYTES = "zero-byte file"


@dataclass(frozen=True)
class Header:
    width: int = 0  # as displayed: EXIF orientations 5-8 already swapped
    height: int = 0
    format: str = ""
    reason: str | None = None  # why the file cannot be used; None when it can

    @property
    def ok(self) -> bool:
        return self.reason is None


class _Corrupt(Exception):
    """The header is inconsistent: the file is not a readable image."""


class _File:
    """pread-based access: the head is read once, anything else on demand."""

    def __init__(self, fd: int, size: int):
        self.fd = fd
        self.size = size
        self.head = os.pread(fd, min(size, HEAD_BYTES), 0)

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0:
            raise _Corrupt
        if offset + n <= len(self.head):
            return self.head[offset : offset + n]
        if offset >= self.size:
            return b""
        return os.pread(self.fd, min(n, self.size - offset), offset)

    def exact(self, offset: int, n: int) -> bytes:
        """n bytes or _Truncated when the file ends first."""
        data = self.read(offset, n)
        if len(data) < n:
            raise _Truncated
        return data

    def tail(self, n: int = TAIL_BYTES) -> bytes:
        start = max(0, self.size - n)
        return self.read(start, self.size - start)


class _Bytes(_File):
    """The same access over bytes already in memory (an image stored in a dataset's rows)."""

    def __init__(self, data: bytes):  # no super().__init__: there is no file descriptor
        self.data = data
        self.size = len(data)
        self.head = data[:HEAD_BYTES]

    def read(self, offset: int, n: int) -> bytes:
        if offset < 0 or n < 0:
            raise _Corrupt
        return self.data[offset : offset + n]


class _Truncated(Exception):
    pass


_TIFF = object()  # marker: TIFF goes through Pillow, whose TIFF reader parses tags on open


def read_header(path: str | os.PathLike, size: int | None = None) -> Header:
    """Size and usability of one image file. Never raises for bad files; OSError only when
    the file cannot be opened at all (missing, permissions, a symlink loop)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if size is None:
            size = os.fstat(fd).st_size
        if size == 0:
            return Header(reason=ZERO_BYTES)
        f = _File(fd, size)
        parser = _parser_for(f.head)
        if parser is None:
            return Header(reason=NOT_AN_IMAGE)
        if parser is _TIFF:
            return _with_pillow(path, f)
        try:
            header = parser(f)
        except _Truncated:
            return Header(reason=TRUNCATED)
        except (_Corrupt, struct.error, IndexError, ValueError):
            return Header(reason=f"{NOT_AN_IMAGE} (corrupt header)")
        return _checked(header)
    finally:
        os.close(fd)


def read_header_bytes(data: bytes) -> Header:
    """read_header for an image held in memory (a row of a Hugging Face dataset): the same
    parsers and the same reasons. Never raises for bad bytes."""
    if not data:
        return Header(reason=ZERO_BYTES)
    f = _Bytes(bytes(data))
    parser = _parser_for(f.head)
    if parser is None:
        return Header(reason=NOT_AN_IMAGE)
    if parser is _TIFF:
        import io

        return _with_pillow(io.BytesIO(f.data), f)
    try:
        header = parser(f)
    except _Truncated:
        return Header(reason=TRUNCATED)
    except (_Corrupt, struct.error, IndexError, ValueError):
        return Header(reason=f"{NOT_AN_IMAGE} (corrupt header)")
    return _checked(header)


def _checked(h: Header) -> Header:
    if h.reason is None:
        if h.width <= 0 or h.height <= 0:
            return Header(format=h.format, reason=f"{NOT_AN_IMAGE} (size {h.width}x{h.height})")
        if h.width * h.height > MAX_PIXELS:
            return Header(
                h.width, h.height, h.format, f"too large to open ({h.width}x{h.height} exceeds Pillow's pixel limit)"
            )
    return h


def _parser_for(head: bytes):
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return _png
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _gif
    if head[:2] == b"BM" and len(head) >= 26:
        return _bmp
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _TIFF
    return None


# -- orientation ------------------------------------------------------------------------------


def _orientation(tiff: bytes) -> int:
    """EXIF Orientation (tag 0x0112) from a TIFF-structured blob; 1 when absent or unreadable."""
    if tiff.startswith(b"Exif\x00\x00"):
        tiff = tiff[6:]
    if len(tiff) < 8:
        return 1
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        return 1
    try:
        ifd = struct.unpack_from(order + "I", tiff, 4)[0]
        (count,) = struct.unpack_from(order + "H", tiff, ifd)
        for i in range(min(count, 512)):
            tag, typ, _n = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * i)
            if tag == 0x0112:
                fmt = "H" if typ == 3 else "I" if typ == 4 else "B"
                return int(struct.unpack_from(order + fmt, tiff, ifd + 2 + 12 * i + 8)[0])
    except struct.error:
        pass
    return 1


def _oriented(width: int, height: int, orientation: int, fmt: str) -> Header:
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return Header(width, height, fmt)


# -- PNG --------------------------------------------------------------------------------------


def _png(f: _File) -> Header:
    ihdr = f.exact(8, 25)
    if ihdr[4:8] != b"IHDR":
        raise _Corrupt
    width, height = struct.unpack(">II", ihdr[8:16])
    # eXIf is written before IDAT by Pillow and most tools; walk the chunks in the head only.
    orientation, pos = 1, 8
    while pos + 8 <= len(f.head):
        length, kind = struct.unpack(">I4s", f.head[pos : pos + 8])
        if kind in (b"IDAT", b"IEND"):
            break
        if kind == b"eXIf":
            orientation = _orientation(f.read(pos + 8, min(length, 65536)))
            break
        pos += 12 + length
    if b"IEND" not in f.tail() and not _png_complete(f):
        raise _Truncated
    return _oriented(width, height, orientation, "PNG")


def _png_complete(f: _File) -> bool:
    """Walk the chunk lengths (reading 8 bytes per chunk) until IEND; slow path for files
    with data after IEND."""
    pos = 8
    for _ in range(1_000_000):
        head = f.read(pos, 8)
        if len(head) < 8:
            return False
        length, kind = struct.unpack(">I4s", head)
        if length > 0x7FFFFFFF:
            raise _Corrupt
        if kind == b"IEND":
            return True
        pos += 12 + length
    return False


# -- JPEG -------------------------------------------------------------------------------------

_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_NO_LENGTH = {0x01, *range(0xD0, 0xD9)}


def _jpeg(f: _File) -> Header:
    pos, size, orientation = 2, None, 1
    while True:
        b = f.exact(pos, 2)
        if b[0] != 0xFF:
            raise _Corrupt
        marker = b[1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _NO_LENGTH:
            pos += 2
            continue
        (length,) = struct.unpack(">H", f.exact(pos + 2, 2))
        if length < 2:
            raise _Corrupt
        if marker == 0xE1 and orientation == 1:
            app1 = f.read(pos + 4, min(length - 2, 4096))
            if app1.startswith(b"Exif\x00\x00"):
                orientation = _orientation(app1)
        elif marker in _SOF:
            height, width = struct.unpack(">HH", f.exact(pos + 5, 4))
            size = (width, height)
        elif marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        elif marker == 0xD9:  # end of image before any image data
            raise _Corrupt
        pos += 2 + length
    if size is None:
        raise _Corrupt
    scan_start = pos + 2 + length
    tail = f.read(max(scan_start, f.size - TAIL_BYTES), TAIL_BYTES)
    if b"\xff\xd9" not in tail and not _jpeg_has_eoi(f, scan_start):
        raise _Truncated
    return _oriented(size[0], size[1], orientation, "JPEG")


def _jpeg_has_eoi(f: _File, start: int) -> bool:
    """Entropy-coded data cannot hold FFD9 (FF is always stuffed), so the first FFD9 after
    the scan starts is the end of the image: data after it (a motion-photo video, a vendor
    trailer) is fine; no FFD9 means the file was cut. Read in blocks; slow path only."""
    block = 1 << 20
    pos, carry = start, b""
    while pos < f.size:
        data = carry + f.read(pos, block)
        if b"\xff\xd9" in data:
            return True
        carry = data[-1:]
        pos += block
    return False


# -- WebP -------------------------------------------------------------------------------------


def _webp(f: _File) -> Header:
    (riff_size,) = struct.unpack("<I", f.exact(4, 4))
    if riff_size + 8 > f.size:
        raise _Truncated
    chunk = f.exact(12, 8)
    kind = chunk[:4]
    data = f.exact(20, 10)
    orientation = 1
    if kind == b"VP8 ":
        if data[3:6] != b"\x9d\x01\x2a":
            raise _Corrupt
        width, height = (v & 0x3FFF for v in struct.unpack("<HH", data[6:10]))
    elif kind == b"VP8L":
        if data[0] != 0x2F:
            raise _Corrupt
        bits = int.from_bytes(data[1:5], "little")
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8X":
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        if data[0] & 0x08:  # has EXIF: a chunk after the image data
            orientation = _webp_orientation(f, riff_size)
    else:
        raise _Corrupt
    return _oriented(width, height, orientation, "WEBP")


def _webp_orientation(f: _File, riff_size: int) -> int:
    pos, end = 12, min(f.size, riff_size + 8)
    for _ in range(10_000):
        if pos + 8 > end:
            break
        kind, length = struct.unpack("<4sI", f.read(pos, 8))
        if kind == b"EXIF":
            return _orientation(f.read(pos + 8, min(length, 65536)))
        pos += 8 + length + (length & 1)
    return 1


# -- GIF --------------------------------------------------------------------------------------


def _gif(f: _File) -> Header:
    width, height, flags = struct.unpack("<HHB", f.exact(6, 5))
    if not _gif_complete(f, flags):
        raise _Truncated
    return Header(width, height, "GIF")


def _gif_complete(f: _File, flags: int) -> bool:
    """Walk the block structure to the trailer (0x3B)."""
    if f.size > 256 << 20:  # too big to walk cheaply; trust the last byte
        return f.tail(1) == b";"
    data = f.read(0, f.size) if f.size > len(f.head) else f.head
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    n = len(data)

    def skip_sub_blocks(p: int) -> int:
        while p < n:
            length = data[p]
            p += 1 + length
            if length == 0:
                return p
        return n + 1

    while pos < n:
        kind = data[pos]
        if kind == 0x3B:
            return True
        if kind == 0x21:  # extension: label, then sub-blocks
            pos = skip_sub_blocks(pos + 2)
        elif kind == 0x2C:  # image descriptor (+ local colour table), LZW code size, data
            if pos + 10 > n:
                return False
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            pos = skip_sub_blocks(pos + 1)
        else:
            raise _Corrupt
    return False


# -- BMP --------------------------------------------------------------------------------------


def _bmp(f: _File) -> Header:
    offset, dib = struct.unpack("<II", f.exact(10, 8))
    if dib == 12:
        width, height, _planes, bpp = struct.unpack("<hhHH", f.exact(18, 8))
        compression, image_size = 0, 0
    elif dib >= 40:
        width, height, _planes, bpp, compression, image_size = struct.unpack("<iiHHII", f.exact(18, 20))
    else:
        raise _Corrupt
    if bpp not in (1, 2, 4, 8, 16, 24, 32):
        raise _Corrupt
    if compression in (0, 3, 6):  # uncompressed or bit fields: rows padded to 4 bytes
        expected = offset + ((abs(width) * bpp + 31) // 32) * 4 * abs(height)
    else:
        expected = offset + image_size
    if f.size < expected:
        raise _Truncated
    return Header(abs(width), abs(height), "BMP")


# -- TIFF: Pillow's lazy open --------------------------------------------------------


def _with_pillow(path: str | os.PathLike | IO[bytes], f: _File) -> Header:
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning and friends
            with Image.open(path) as im:
                fmt = im.format or ""
                tags = im.tag_v2  # parsed on open
                # Stored size, then our own orientation swap: recent Pillows already report
                # the oriented size for TIFF, older ones do not.
                width, height = int(tags[256]), int(tags[257])
                orientation = int(tags.get(0x0112, 1) or 1)
                if not _tiff_complete(tags, f.size):
                    return Header(reason=TRUNCATED)
    except Image.DecompressionBombError:
        return Header(reason="too large to open (exceeds Pillow's pixel limit)")
    except UnidentifiedImageError:
        return Header(reason=NOT_AN_IMAGE)
    except Exception as e:  # Pillow raises many kinds on bad TIFF headers
        return Header(reason=f"{NOT_AN_IMAGE} ({e.__class__.__name__}: {e})"[:200])
    return _checked(_oriented(width, height, orientation, fmt))


def _tiff_complete(tags, size: int) -> bool:
    for offsets_tag, counts_tag in ((273, 279), (324, 325)):  # strips, tiles
        offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
        if offsets and counts:
            if not isinstance(offsets, tuple):
                offsets, counts = (offsets,), (counts,)
            if max(o + c for o, c in zip(offsets, counts)) > size:
                return False
    return True
