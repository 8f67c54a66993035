"""The protocol rules, one module per concern; ``table`` builds the rule table
for each schema version (sequencer.core.records.SCHEMA_VERSION)."""
