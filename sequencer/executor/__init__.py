"""The executor: the state machine as one package that everyone shares.

The chain projection (state, state tree, receipts, block index), its snapshot
codecs, the genesis and the output an L1 checkpoint commits to.  The node, the
checkpointer, the verifier and the exit kit all build on these; nothing here
does I/O (no Kafka, no sockets, no files, no clock), which a test enforces
(tests/unit/test_layering.py).
"""
