"""isoroll: the package that wires the sequencer and the L1 bridge together.

``sequencer`` (core, executor, log, node) knows nothing of L1; ``l1_bridge``
builds on ``sequencer``; this package sits above both: the ``isoroll`` command
line (isoroll.cli), the node with its L1 services and L1 API routes
(isoroll.service) and the devnet (isoroll.devnet).  docs/architecture.md has
the layers and the import rules (tests/unit/test_layering.py enforces them).
"""
