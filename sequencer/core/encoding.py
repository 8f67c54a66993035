"""Bytes for records and blocks, and the hashes derived from them.

One Encoder and one Decoder per stream (msgspec's guidance): decoders are built
once at import and reused.
"""
from __future__ import annotations

import msgspec

from sequencer.core.hashing import keccak
from sequencer.core.records import Block, Record

_encoder = msgspec.msgpack.Encoder()
_record_decoder = msgspec.msgpack.Decoder(Record)
_block_decoder = msgspec.msgpack.Decoder(Block)

GENESIS_PARENT_HASH = b"\x00" * 32


def encode_record(record: Record) -> bytes:
    return _encoder.encode(record)


def decode_record(data: bytes | msgspec.Raw) -> Record:
    """Raises msgspec.DecodeError / ValidationError on bytes that are not a record."""
    return _record_decoder.decode(data)


def make_block(number: int, parent_hash: bytes, timestamp_ms: int, records: list[Record]) -> Block:
    return Block(number, parent_hash, timestamp_ms,
                 tuple(msgspec.Raw(encode_record(r)) for r in records))


def encode_block(block: Block) -> bytes:
    return _encoder.encode(block)


def decode_block(data: bytes) -> Block:
    return _block_decoder.decode(data)


def compute_record_hash(record_bytes: bytes | msgspec.Raw) -> bytes:
    """A record's (tx) hash: keccak256 of its log encoding, signature included.
    keccak reads a Raw's buffer directly (no bytes() copy per record)."""
    return keccak(record_bytes)


def compute_block_hash(block_bytes: bytes) -> bytes:
    return keccak(block_bytes)


def compute_message_hash(message: bytes) -> bytes:
    """Hash under which an undecodable Kafka message gets its failed receipt."""
    return keccak(message)
