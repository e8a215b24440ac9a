"""Sans-I/O signaling cores: events and ``now`` in, actions out; no sockets, no clock."""
