"""Turns a link's transmit offloads off (checksum, TSO, GSO), so the kernel cuts and checksums
every packet in software before it leaves: ``python -m tests.netns.children.offloads IFNAME``
(ethtool's ``-K IFNAME tx off tso off gso off``, through pyroute2's ethtool ioctls). Prints the
features that are on afterwards, one JSON list."""

from __future__ import annotations

import json
import sys

from pyroute2.ethtool import Ethtool


def _off(name: str) -> bool:
    """Every transmit checksum, segmentation (the IPXIP6 kind too) and scatter-gather one."""
    return name.startswith("tx-") and any(
        word in name for word in ("checksum", "segmentation", "scatter-gather", "gso")
    )


def main(argv: list[str]) -> None:
    ifname = argv[0]
    with Ethtool() as tool:
        features = tool.get_features(ifname)
        for name, feature in features.features.items():
            if _off(name):
                feature.enable = False
        tool.set_features(ifname, features)
        after = tool.get_features(ifname)
    print(json.dumps(sorted(n for n, f in after.features.items() if f.enable)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
