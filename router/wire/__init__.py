"""Codecs: bytes <-> frozen dataclasses, no state.

``constants`` is the one codepoint table of the Mobility Header world and ``dialect`` the
per-peer ``draft``/``rfc5844`` choice; ``mh``, ``mh_options`` and ``mh_auth`` are the Mobility
Header; ``ethernet``, ``arp``, ``ipv4``, ``icmp``, ``udp`` and ``dhcp`` are the access side.
Decoders raise only :class:`router.wire.errors.DecodeError` subclasses on bad bytes.
"""
