"""The uncompressed size a Parquet column chunk's pages declare, read without decompressing.

A Parquet footer's sizes are the writer's word: a footer that declares a small column chunk can
sit over pages that each decompress to hundreds of megabytes, and Arrow allocates what each
page header declares. So a file someone else wrote is checked page by page before Arrow reads
it: each page header (Thrift compact protocol) is parsed for its ``uncompressed_page_size``
and skipped over by its ``compressed_page_size``, over the very byte range Arrow reads (from
the dictionary page, or the first data page, for the chunk's ``total_compressed_size``).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

# PageHeader's fields (parquet.thrift): 2 uncompressed_page_size, 3 compressed_page_size.
_UNCOMPRESSED, _COMPRESSED = 2, 3
# Thrift compact types.
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY = range(9)
_LIST, _SET, _MAP, _STRUCT = 9, 10, 11, 12
# A page header is a few dozen bytes plus statistics (min/max of a page, bounded by a cell);
# nesting in parquet.thrift is a few levels deep.
_MAX_DEPTH = 8
_MAX_BINARY = 64 * 1024**2


class PageError(ValueError):
    """A page header that cannot be parsed or does not fit its column chunk."""


class _Reader:
    def __init__(self, stream: BinaryIO, end: int):
        self.stream, self.end = stream, end

    def byte(self) -> int:
        data = self.stream.read(1)
        if not data or self.stream.tell() > self.end:
            raise PageError("a page header runs past its column chunk")
        return data[0]

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise PageError("a page header holds an over-long integer")

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def skip(self, n: int) -> None:
        if n < 0 or self.stream.tell() + n > self.end:
            raise PageError("a page header runs past its column chunk")
        self.stream.seek(n, 1)

    def value(self, kind: int, depth: int) -> int | None:
        """Read (or skip) one value of compact type ``kind``; integers are returned."""
        if depth > _MAX_DEPTH:  # lists of lists too: a header of nested lists overflowed the stack
            raise PageError("a page header is nested too deeply")
        if kind in (_TRUE, _FALSE):
            return None
        if kind == _BYTE:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.skip(8)
        elif kind == _BINARY:
            size = self.varint()
            if size > _MAX_BINARY:
                raise PageError("a page header holds an oversized value")
            self.skip(size)
        elif kind in (_LIST, _SET):
            header = self.byte()
            size, element = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            for _ in range(size):
                self.value(_BYTE if element in (_TRUE, _FALSE) else element, depth + 1)
        elif kind == _MAP:
            size = self.varint()
            if size:
                types = self.byte()
                # In a collection a bool is a byte, as in a list: read as a field's (no byte),
                # a map of 2^62 bools looped without reading anything.
                key, value = (_BYTE if t in (_TRUE, _FALSE) else t
                              for t in (types >> 4, types & 0x0F))
                for _ in range(size):
                    self.value(key, depth + 1)
                    self.value(value, depth + 1)
        elif kind == _STRUCT:
            self.struct(depth + 1)
        else:
            raise PageError(f"a page header holds an unknown Thrift type {kind}")
        return None

    def struct(self, depth: int) -> dict[int, int | None]:
        """The integer fields of a struct, by field id (nested structs are skipped)."""
        if depth > _MAX_DEPTH:
            raise PageError("a page header is nested too deeply")
        fields: dict[int, int | None] = {}
        last = 0
        while True:
            header = self.byte()
            kind = header & 0x0F
            if kind == _STOP:
                return fields
            delta = header >> 4
            last = last + delta if delta else self.zigzag()
            fields[last] = self.value(kind, depth)


def declared_uncompressed_bytes(stream: BinaryIO, start: int, length: int,
                                max_pages: int) -> int:
    """The sum of ``uncompressed_page_size`` over the pages in ``[start, start + length)``;
    PageError when a header is malformed, a size is negative, or there are over ``max_pages``
    pages (each page costs Arrow a header parse and a buffer)."""
    if start < 0 or length < 0:
        raise PageError("a column chunk has a negative offset or length")
    end = start + length
    reader = _Reader(stream, end)
    stream.seek(start)
    total = pages = 0
    while stream.tell() < end:
        pages += 1
        if pages > max_pages:
            raise PageError(f"a column chunk holds over {max_pages} pages")
        header = reader.struct(0)
        uncompressed, compressed = header.get(_UNCOMPRESSED), header.get(_COMPRESSED)
        if not isinstance(uncompressed, int) or not isinstance(compressed, int) or min(
                uncompressed, compressed) < 0:
            raise PageError("a page header lacks its sizes")
        total += uncompressed
        reader.skip(compressed)
    return total


def declared_file_bytes(path: Path) -> int:
    """The uncompressed bytes every column chunk of a Parquet file declares, the larger of its
    footer's figure and its page headers' sum: what Arrow would allocate to read it whole.
    PageError for a file whose footer or pages cannot be read."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as exc:
        raise PageError(f"its footer cannot be read: {exc}") from exc
    total = 0
    with open(path, "rb") as stream:
        for group in range(meta.num_row_groups):
            info = meta.row_group(group)
            for column in range(info.num_columns):
                chunk = info.column(column)
                start = (chunk.dictionary_page_offset if chunk.has_dictionary_page
                         and chunk.dictionary_page_offset else chunk.data_page_offset)
                total += max(chunk.total_uncompressed_size, declared_uncompressed_bytes(
                    stream, start, chunk.total_compressed_size, info.num_rows + 2))
    return total
