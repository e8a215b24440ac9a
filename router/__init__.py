"""netlmm: IPv4/netlmm6/IPv4 (draft-yang-softwire-netlmm-v4netlmm6v4-00) router appliance."""

__version__ = "0.1.0"
