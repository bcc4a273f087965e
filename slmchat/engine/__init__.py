"""The engine: ``Session`` assembles each turn from the capabilities and streams its events."""
