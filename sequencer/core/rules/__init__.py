"""The protocol rules, one module per concern; ``table`` builds the rule table
for each log schema version (sequencer.core.presets.SCHEMA_VERSION)."""
