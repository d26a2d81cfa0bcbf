"""Requests built byte by byte, as a hostile client sends them: nested deeper
than protobuf itself lets one build."""

from __future__ import annotations


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def field(number: int, size: int) -> bytes:
    """The key and length of a length-delimited field."""
    return varint(number << 3 | 2) + varint(size)


def deep_append(depth: int, text: int) -> bytes:
    """An AppendLogEntriesRequest whose entry's fields nest `depth` Structs around
    `text` bytes, with a message that is not UTF-8: built on the wire (protobuf
    itself refuses to build one nested this deep)."""
    # Struct{fields: {"text": Value{string_value}}}, then {"k": Value{struct_value: …}} around it.
    value = field(3, text) + b"x" * text
    entry = field(1, 4) + b"text" + field(2, len(value)) + value
    prefixes = [field(1, len(entry))]
    size = len(entry) + len(prefixes[0])
    for _ in range(depth):
        value_size = len(field(5, size)) + size
        entry_size = 3 + len(field(2, value_size)) + value_size
        prefixes.append(field(1, entry_size) + field(1, 1) + b"k" + field(2, value_size) + field(5, size))
        size += len(prefixes[-1])
    struct = b"".join(reversed(prefixes)) + entry
    log_entry = field(3, 2) + b"\xffB" + field(4, len(struct)) + struct
    return field(1, 1) + b"t" + field(2, len(log_entry)) + log_entry
