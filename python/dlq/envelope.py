"""The dlq envelope (v1), encoded and decoded by the Rust codec.

``encode(letter)`` gives the same bytes as the Rust side (``dlq export``);
``decode(data)`` reads a v1 envelope, the seed format
``{original_record, error, timestamp}`` or any other bytes (a raw record),
and never fails.
"""

from ._native import DeadLetter, decode, encode

__all__ = ["DeadLetter", "decode", "encode"]
