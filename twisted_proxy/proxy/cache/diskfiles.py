# -*- test-case-name: tests.test_cache_disk -*-
"""
The files of one L{DiskStore} entry: their format, their checksums, a body
read back block by block with each block checked (L{CheckedBody}), and a
body written with its checksums computed as it streams
(L{BodyFileWriter}).  The store itself (index, budget, directory, locking)
is L{twisted_proxy.proxy.cache.disk}.

Layout (format version 1)::

    DIR/lock                      held (flock) while a process uses DIR
    DIR/tmp/                      bodies and metadata being written
    DIR/v1/XY/ID.body             body, block checksums, footer
    DIR/v1/XY/ID.meta             metadata (JSON), with its own checksum

C{ID} is 32 random hex digits, new for every stored response (never
reused: a replaced response gets a new ID, and its old files are unlinked);
C{XY} is its first two digits (256 directories keep each one small).

C{ID.body}::

    body (bodyLength bytes)
    CRC-32 of each 64 KiB block of the body, 4 bytes big-endian each
    footer, 32 bytes: b"TPCB0001", bodyLength (8), blockSize (4),
        blockCount (4), CRC-32 of the table (4), CRC-32 of the footer's
        first 28 bytes (4)

C{ID.meta}: one line C{TPCM0001 <length> <crc32 hex>\\n} then C{length}
bytes of JSON (L{StoredResponse.toJSON}).

Pure: no Twisted imports; synchronous file I/O on the caller's thread, each
call bounded (one block read, one chunk written, one table and footer).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Callable
from typing import BinaryIO

from .entry import StoredResponse
from .store import CHUNK_SIZE, EntryUnavailable, LocalBody

__all__ = [
    "FORMAT_VERSION",
    "MAX_META",
    "roundUp",
    "bodyFileSize",
    "encodeMeta",
    "decodeMeta",
    "footerBlockSize",
    "readTable",
    "unlink",
    "CheckedBody",
    "BodyFileWriter",
]

FORMAT_VERSION = 1
_BODY_MAGIC = b"TPCB0001"
_META_MAGIC = b"TPCM0001"
_FOOTER = struct.Struct(">8sQIII")  # magic, length, block size, blocks, table CRC
_FOOTER_SIZE = _FOOTER.size + 4  # + CRC of the rest of the footer
MAX_META = 1024 * 1024
"""The largest metadata file read."""
_FS_BLOCK = 4096


def roundUp(size: int) -> int:
    """
    The room a file of C{size} bytes takes, counted in 4 KiB blocks (at
    least one).
    """
    return max(_FS_BLOCK, (size + _FS_BLOCK - 1) // _FS_BLOCK * _FS_BLOCK)


def _blockCount(length: int, blockSize: int) -> int:
    return (length + blockSize - 1) // blockSize


def bodyFileSize(length: int, blockSize: int = CHUNK_SIZE) -> int:
    """
    The size of the body file of a body of C{length} bytes: the body, its
    checksum table and the footer.
    """
    return length + 4 * _blockCount(length, blockSize) + _FOOTER_SIZE


def encodeMeta(entry: StoredResponse) -> bytes:
    """
    The contents of C{entry}'s metadata file.
    """
    data = json.dumps(entry.toJSON(), separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return b"%s %d %08x\n" % (_META_MAGIC, len(data), zlib.crc32(data)) + data


def decodeMeta(raw: bytes) -> StoredResponse:
    """
    The entry a metadata file describes.

    @raise ValueError: if C{raw} is not an intact metadata file.
    """
    line, sep, data = raw.partition(b"\n")
    parts = line.split(b" ")
    if not sep or len(parts) != 3 or parts[0] != _META_MAGIC:
        raise ValueError("bad metadata header")
    if int(parts[1]) != len(data) or int(parts[2], 16) != zlib.crc32(data):
        raise ValueError("metadata checksum or length mismatch")
    return StoredResponse.fromJSON(json.loads(data))


def footerBlockSize(bodyPath: str, bodySize: int) -> int:
    """
    The block size a body file's footer records (checked fully when it is
    opened, by L{readTable}).

    @raise ValueError: if the file has no footer.
    @raise OSError: if it cannot be read.
    """
    if bodySize < _FOOTER_SIZE:
        raise ValueError("body file too short")
    with open(bodyPath, "rb") as f:
        f.seek(bodySize - _FOOTER_SIZE)
        footer = f.read(_FOOTER_SIZE)
    magic, _, blockSize, _, _ = _FOOTER.unpack(footer[: _FOOTER.size])
    if magic != _BODY_MAGIC or blockSize <= 0:
        raise ValueError("bad body footer")
    return int(blockSize)


def readTable(f: BinaryIO, bodyLength: int) -> tuple[list[int], int]:
    """
    Check a body file's size and footer and read its checksum table.

    @param bodyLength: the body length its metadata records.
    @return: the CRC-32 of each block, and the block size.
    @raise ValueError: if they do not check out.
    @raise OSError: if the file cannot be read.
    """
    size = os.fstat(f.fileno()).st_size
    if size < _FOOTER_SIZE:
        raise ValueError("body file truncated")
    f.seek(size - _FOOTER_SIZE)
    footer = f.read(_FOOTER_SIZE)
    (footerCrc,) = struct.unpack(">I", footer[_FOOTER.size :])
    if zlib.crc32(footer[: _FOOTER.size]) != footerCrc:
        raise ValueError("body footer fails its checksum")
    magic, length, blockSize, blocks, tableCrc = _FOOTER.unpack(footer[: _FOOTER.size])
    if magic != _BODY_MAGIC or length != bodyLength or blockSize <= 0:
        raise ValueError("body footer does not match the metadata")
    if blocks != _blockCount(length, blockSize) or size != bodyFileSize(length, blockSize):
        raise ValueError("body file has the wrong size")
    f.seek(length)
    raw = f.read(4 * blocks)
    if len(raw) != 4 * blocks or zlib.crc32(raw) != tableCrc:
        raise ValueError("checksum table is corrupt")
    return list(struct.unpack(">%dI" % (blocks,), raw)), int(blockSize)


def unlink(path: str) -> None:
    """
    Remove a file if it is there (and ignore failures: the next start
    removes orphans).
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        pass


class CheckedBody(LocalBody):
    """
    A stored body read block by block, each block checked against its
    CRC-32 before any of it is delivered.

    @ivar _corrupt: called with what is wrong when a block cannot be read
        or fails its checksum (the store discards the entry).
    """

    def __init__(
        self,
        f: BinaryIO,
        bodyLength: int,
        table: list[int],
        blockSize: int,
        offset: int,
        length: int,
        corrupt: Callable[[str], None],
    ) -> None:
        """
        @raise EntryUnavailable: if the first block to deliver cannot be
            read or fails its checksum (checked now, before a response head
            goes out).
        """
        super().__init__(length)
        self._file: BinaryIO | None = f
        self._total = bodyLength
        self._table = table
        self._blockSize = blockSize
        self._block = offset // blockSize
        self._buffer = b""
        self._skip = offset - self._block * blockSize
        self._corrupt = corrupt
        if length > 0:
            # Check the first block now, before the head goes out.
            self._fill()

    def _fill(self) -> None:
        f = self._file
        start = self._block * self._blockSize
        size = min(self._blockSize, self._total - start)
        try:
            assert f is not None
            f.seek(start)
            data = f.read(size)
        except OSError as e:
            self._corrupt("read error: {}".format(e))
            raise EntryUnavailable("the stored body could not be read") from None
        if len(data) != size or zlib.crc32(data) != self._table[self._block]:
            self._corrupt("block {} fails its checksum".format(self._block))
            raise EntryUnavailable("the stored body is corrupt")
        self._block += 1
        self._buffer = data[self._skip :]
        self._skip = 0

    def _read(self, size: int) -> bytes:
        if not self._buffer:
            self._fill()
        data = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return data

    def _close(self) -> None:
        f = self._file
        if f is not None:
            self._file = None
            self._buffer = b""
            f.close()


class BodyFileWriter:
    """
    A body file being written: the body as it streams, the CRC-32 of each
    block computed on the way, then the checksum table and the footer.

    @ivar size: the body bytes written so far.
    """

    def __init__(self, path: str, blockSize: int) -> None:
        """
        @raise OSError: if the file cannot be created.
        """
        self._blockSize = blockSize
        self._file = open(path, "wb")
        self.size = 0
        self._table: list[int] = []
        self._crc = 0
        self._fill = 0

    def write(self, data: bytes) -> None:
        """
        @raise OSError: if the write fails (then nothing of C{data} counts).
        """
        self._file.write(data)
        self.size += len(data)
        view = memoryview(data)
        block = self._blockSize
        while view:
            take = min(block - self._fill, len(view))
            self._crc = zlib.crc32(view[:take], self._crc)
            self._fill += take
            view = view[take:]
            if self._fill == block:
                self._table.append(self._crc)
                self._crc = 0
                self._fill = 0

    def finish(self) -> None:
        """
        Write the checksum table and the footer, and close the file.

        @raise OSError: if that fails.
        """
        if self._fill:
            self._table.append(self._crc)
        table = b"".join(struct.pack(">I", c) for c in self._table)
        footer = _FOOTER.pack(
            _BODY_MAGIC, self.size, self._blockSize, len(self._table), zlib.crc32(table)
        )
        footer += struct.pack(">I", zlib.crc32(footer))
        self._file.write(table)
        self._file.write(footer)
        self._file.close()

    def close(self) -> None:
        """
        Close the file, given up (the caller unlinks it).
        """
        try:
            self._file.close()
        except OSError:
            pass
