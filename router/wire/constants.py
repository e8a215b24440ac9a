"""Codepoints of the Mobility Header world: one enum per IANA registry, each citing its RFC.

The single table every codec and the core read: no numeric literal for a codepoint appears
anywhere else. Source of the values: IANA "Mobile IPv6 parameters" (see
``shared/docs/wire-reference.md`` section 1). What differs between the ``draft`` and ``rfc5844``
dialects (the seed's V flags, its option type and its two status codes) lives in
:mod:`router.wire.dialect`, built from these names.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from typing import cast

#: IPv6 Next Header of the Mobility Header (RFC 6275 section 6.1.1).
IPPROTO_MH = 135
#: IPv6 Next Header of an IPv4 packet carried in IPv6 (RFC 2473 section 5).
IPPROTO_IPIP = 4
#: IPv6 Next Header of an IPv6 packet carried in IPv6 (RFC 2473): a dual-stack MS's IPv6.
IPPROTO_IPV6_IN_IPV6 = 41
#: "Payload Proto" of every MH we send: IPPROTO_NONE (RFC 6275 section 6.1.1).
MH_PAYLOAD_PROTO_NONE = 59
#: Lifetime fields of BU/BA count units of 4 seconds (RFC 6275 sections 6.1.7, 6.1.8).
LIFETIME_UNIT_SECONDS = 4


class MHType(IntEnum):
    """Mobility Header Types (RFC 6275 section 6.1; IANA "Mobility Header Types")."""

    BINDING_REFRESH_REQUEST = 0
    HOME_TEST_INIT = 1
    CARE_OF_TEST_INIT = 2
    HOME_TEST = 3
    CARE_OF_TEST = 4
    BINDING_UPDATE = 5  # with P set: Proxy Binding Update (RFC 5213)
    BINDING_ACK = 6  # with P set: Proxy Binding Acknowledgement (RFC 5213)
    BINDING_ERROR = 7
    FAST_BINDING_UPDATE = 8  # RFC 5568
    FAST_BINDING_ACK = 9  # RFC 5568
    FAST_NEIGHBOR_ADVERTISEMENT = 10  # RFC 5568, deprecated
    EXPERIMENTAL = 11  # RFC 5096
    HOME_AGENT_SWITCH = 12  # RFC 5142
    HEARTBEAT = 13  # RFC 5847
    HANDOVER_INITIATE = 14  # RFC 5568
    HANDOVER_ACK = 15  # RFC 5568
    BINDING_REVOCATION = 16  # RFC 5846: BRI or BRA by B.R. Type


class OptionType(IntEnum):
    """Mobility Options (RFC 6275 section 6.2; IANA "Mobility Options")."""

    PAD1 = 0
    PADN = 1
    BINDING_REFRESH_ADVICE = 2
    ALTERNATE_COA = 3
    NONCE_INDICES = 4
    BINDING_AUTH_DATA = 5
    MOBILE_NETWORK_PREFIX = 6  # RFC 3963
    MH_LINK_LAYER_ADDRESS = 7  # RFC 5568
    MN_ID = 8  # RFC 4283
    AUTH = 9  # RFC 4285 Mobility Message Authentication
    MESG_ID = 10  # RFC 4285 Mobility Message Replay Protection
    EXPERIMENTAL = 18  # RFC 5096; the draft dialect's default carrier of the seed option
    VENDOR_SPECIFIC = 19  # RFC 5094
    SERVICE_SELECTION = 20  # RFC 5149
    HOME_NETWORK_PREFIX = 22  # RFC 5213 section 8.3
    HANDOFF_INDICATOR = 23  # RFC 5213 section 8.4
    ACCESS_TECHNOLOGY_TYPE = 24  # RFC 5213 section 8.5
    MN_LINK_LAYER_ID = 25  # RFC 5213 section 8.6
    LINK_LOCAL_ADDRESS = 26  # RFC 5213 section 8.7
    TIMESTAMP = 27  # RFC 5213 section 8.8
    RESTART_COUNTER = 28  # RFC 5847 section 5.2
    IPV4_HOME_ADDRESS_DSMIP = 29  # RFC 5555
    IPV4_ADDRESS_ACK = 30  # RFC 5555
    IPV4_HOA_REQUEST = 36  # RFC 5844 section 3.3.1
    IPV4_HOA_REPLY = 37  # RFC 5844 section 3.3.2
    IPV4_DEFAULT_ROUTER = 38  # RFC 5844 section 3.3.3
    IPV4_DHCP_SUPPORT_MODE = 39  # RFC 5844 section 3.3.4


class BUFlag(IntFlag):
    """Binding Update flags, the 16-bit word at MH offset 8 (IANA "Binding Update Flags").

    0x0100 is F in the registry; the seed puts its V flag there (see :mod:`router.wire.dialect`).
    """

    A = 0x8000  # acknowledge requested (RFC 6275)
    H = 0x4000  # home registration (RFC 6275)
    L = 0x2000  # link-local address compatibility (RFC 6275)
    K = 0x1000  # key management mobility capability (RFC 6275)
    M = 0x0800  # MAP registration (RFC 4140)
    R = 0x0400  # mobile router (RFC 3963)
    P = 0x0200  # proxy registration (RFC 5213)
    F = 0x0100  # forcing UDP encapsulation (RFC 5555)
    T = 0x0080  # TLV-header format (RFC 5845)
    B = 0x0040  # bulk binding update (RFC 6602)
    S = 0x0020  # multicast subscription (RFC 7161)
    D = 0x0010  # DMM (RFC 8885)


class BAFlag(IntFlag):
    """Binding Acknowledgement flags, the byte at MH offset 7 (IANA "Binding Ack Flags").

    0x10 is T in the registry; the seed puts its V flag there (see :mod:`router.wire.dialect`).
    """

    K = 0x80  # RFC 6275
    R = 0x40  # RFC 3963
    P = 0x20  # RFC 5213
    T = 0x10  # RFC 5845
    B = 0x08  # RFC 6602
    S = 0x04  # RFC 7161
    D = 0x02  # RFC 8885


class BRFlag(IntFlag):
    """Binding Revocation flags, the 16-bit word at MH offset 10 (RFC 5846 section 6.1)."""

    P = 0x8000  # proxy binding
    V = 0x4000  # IPv4 HoA binding only
    G = 0x2000  # global revocation


class Status(IntEnum):
    """Binding Acknowledgement status (IANA "Status Codes"). Below 128: accepted.

    142 and 143 are RFC 3963's here; the draft dialect gives them the seed's meaning (seed
    section 3.3). :class:`router.wire.dialect.Dialect` says which number means what.
    """

    ACCEPTED = 0
    ACCEPTED_PREFIX_DISCOVERY_NECESSARY = 1
    GRE_KEY_OPTION_NOT_REQUIRED = 2
    GRE_TUNNELING_BUT_TLV_HEADER_NOT_SUPPORTED = 3
    MCOA_NOTCOMPLETE = 4
    MCOA_RETURNHOME_WO_NDP = 5
    PBU_ACCEPTED_TB_IGNORED_SETTINGSMISMATCH = 6
    REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INSUFFICIENT_RESOURCES = 130
    HOME_REGISTRATION_NOT_SUPPORTED = 131
    NOT_HOME_SUBNET = 132
    NOT_HOME_AGENT_FOR_THIS_MN = 133
    DUPLICATE_ADDRESS_DETECTION_FAILED = 134
    SEQUENCE_NUMBER_OUT_OF_WINDOW = 135
    EXPIRED_HOME_NONCE_INDEX = 136
    EXPIRED_CARE_OF_NONCE_INDEX = 137
    EXPIRED_NONCES = 138
    REGISTRATION_TYPE_CHANGE_DISALLOWED = 139
    MOBILE_ROUTER_OPERATION_NOT_PERMITTED = 140
    INVALID_PREFIX = 141
    NOT_AUTHORIZED_FOR_PREFIX = 142
    FORWARDING_SETUP_FAILED = 143
    MIPV6_ID_MISMATCH = 144
    MIPV6_MESG_ID_REQD = 145
    MIPV6_AUTH_FAIL = 146
    PERMANENT_HOME_KEYGEN_TOKEN_UNAVAILABLE = 147
    CGA_AND_SIGNATURE_VERIFICATION_FAILED = 148
    PERMANENT_HOME_KEYGEN_TOKEN_EXISTS = 149
    NON_NULL_HOME_NONCE_INDEX_EXPECTED = 150
    SERVICE_AUTHORIZATION_FAILED = 151
    PROXY_REG_NOT_ENABLED = 152
    NOT_LMA_FOR_THIS_MOBILE_NODE = 153
    MAG_NOT_AUTHORIZED_FOR_PROXY_REG = 154
    NOT_AUTHORIZED_FOR_HOME_NETWORK_PREFIX = 155
    TIMESTAMP_MISMATCH = 156
    TIMESTAMP_LOWER_THAN_PREV_ACCEPTED = 157
    MISSING_HOME_NETWORK_PREFIX_OPTION = 158
    BCE_PBU_PREFIX_SET_DO_NOT_MATCH = 159
    MISSING_MN_IDENTIFIER_OPTION = 160
    MISSING_HANDOFF_INDICATOR_OPTION = 161
    MISSING_ACCESS_TECH_TYPE_OPTION = 162
    GRE_KEY_OPTION_REQUIRED = 163
    NOT_AUTHORIZED_FOR_IPV4_MOBILITY_SERVICE = 170  # RFC 5844
    NOT_AUTHORIZED_FOR_IPV4_HOME_ADDRESS = 171  # RFC 5844
    NOT_AUTHORIZED_FOR_IPV6_MOBILITY_SERVICE = 172  # RFC 5844
    MULTIPLE_IPV4_HOME_ADDRESS_ASSIGNMENT_NOT_SUPPORTED = 173  # RFC 5844
    INVALID_CARE_OF_ADDRESS = 174


class HoAReplyStatus(IntEnum):
    """IPv4 Home Address Reply status (RFC 5844 section 3.3.2). Below 128: success."""

    SUCCESS = 0
    FAILURE_REASON_UNSPECIFIED = 128
    ADMINISTRATIVELY_PROHIBITED = 129
    INCORRECT_IPV4_HOME_ADDRESS = 130
    INVALID_IPV4_ADDRESS = 131
    DYNAMIC_IPV4_HOA_ASSIGNMENT_NOT_AVAILABLE = 132


class HandoffIndicator(IntEnum):
    """Handoff Indicator values (RFC 5213 section 8.4)."""

    RESERVED = 0
    ATTACHMENT_OVER_NEW_INTERFACE = 1
    HANDOFF_BETWEEN_INTERFACES = 2
    HANDOFF_BETWEEN_MAGS = 3
    HANDOFF_STATE_UNKNOWN = 4
    HANDOFF_STATE_NOT_CHANGED = 5
    ATTACHMENT_SHARING_PREFIXES = 6  # RFC 7864


class AccessTechnologyType(IntEnum):
    """Access Technology Type values (RFC 5213 section 8.5)."""

    RESERVED = 0
    VIRTUAL = 1
    PPP = 2
    IEEE_802_3 = 3
    IEEE_802_11 = 4
    IEEE_802_16E = 5
    GERAN_3GPP = 6
    UTRAN_3GPP = 7
    E_UTRAN_3GPP = 8
    EHRPD_3GPP2 = 9
    HRPD_3GPP2 = 10
    ONE_X_RTT_3GPP2 = 11
    UMB_3GPP2 = 12
    NB_IOT_3GPP = 13


class MNIDSubtype(IntEnum):
    """Mobile Node Identifier subtypes (RFC 4283 section 3; IANA)."""

    NAI = 1
    IPV6_ADDRESS = 2
    IMSI = 3
    P_TMSI = 4
    EUI48 = 5
    EUI64 = 6
    GUTI = 7
    DUID = 8


class AuthSubtype(IntEnum):
    """Mobility Message Authentication option subtypes (RFC 4285 section 5)."""

    MN_HA = 1
    MN_AAA = 2


#: RFC 4285 "HMAC_SHA1_SPI": the well-known SPI of the MN-AAA mode.
HMAC_SHA1_SPI = 3
#: RFC 4285: Mobility SPI values 0-255 are reserved.
MIN_PRIVATE_SPI = 256


class BRType(IntEnum):
    """Binding Revocation Type (RFC 5846 section 6.1)."""

    INDICATION = 1
    ACKNOWLEDGEMENT = 2


class RevocationTrigger(IntEnum):
    """Revocation Trigger of a BRI (RFC 5846 section 6.1.1). 128 and above: global (G)."""

    UNSPECIFIED = 0
    ADMINISTRATIVE_REASON = 1
    INTER_MAG_HANDOVER_SAME_ACCESS_TYPE = 2
    INTER_MAG_HANDOVER_DIFFERENT_ACCESS_TYPE = 3
    INTER_MAG_HANDOVER_UNKNOWN = 4
    USER_INITIATED_SESSION_TERMINATION = 5
    ACCESS_NETWORK_SESSION_TERMINATION = 6
    POSSIBLE_OUT_OF_SYNC_BCE_STATE = 7
    PER_PEER_POLICY = 128
    REVOKING_MN_LOCAL_POLICY = 129


class BRAStatus(IntEnum):
    """Binding Revocation Acknowledgement status (RFC 5846 section 6.2; IANA)."""

    SUCCESS = 0
    PARTIAL_SUCCESS = 1
    BINDING_DOES_NOT_EXIST = 128
    IPV4_HOA_OPTION_REQUIRED = 129
    GLOBAL_REVOCATION_NOT_AUTHORIZED = 130
    REVOKED_MN_IDENTITY_REQUIRED = 131
    REVOCATION_FAILED_MN_ATTACHED = 132
    REVOCATION_TRIGGER_NOT_SUPPORTED = 133
    REVOCATION_FUNCTION_NOT_SUPPORTED = 134
    PROXY_BINDING_REVOCATION_NOT_SUPPORTED = 135


class BindingErrorStatus(IntEnum):
    """Binding Error status (RFC 6275 section 6.1.9)."""

    UNKNOWN_BINDING_FOR_HAO = 1
    UNRECOGNIZED_MH_TYPE = 2


class HeartbeatFlag(IntFlag):
    """Heartbeat flags, the low bits of the 16-bit word at MH offset 6 (RFC 5847 section 5.1)."""

    U = 0x0002  # unsolicited
    R = 0x0001  # response


def known(enum: type[IntEnum], value: int) -> int:
    """The member of ``enum`` with ``value``, or the plain int if unregistered (never raises).

    Decoders keep unknown codepoints as numbers (a peer may use a newer registry than ours).
    """
    member = enum._value2member_map_.get(value)
    return value if member is None else cast(int, member)
