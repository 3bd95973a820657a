"""The contract between the node image (docker/bitcoin-node) and the BitcoinNode component.

The image's Dockerfile, entrypoint and supervisord configuration use the same paths and
IDs; tests/test_image_contract.py reads them back from the image directory so the two
sides cannot drift apart.
"""

from typing import Final

# The volume: Bitcoin Core's datadir, shared by sv2-tp (it must use the node's datadir).
DATA_DIR: Final = "/data"
# Mounted read-only from a Secret: it carries the rpcauth line.
BITCOIN_CONF_PATH: Final = "/etc/bitcoin/bitcoin.conf"
# Mounted read-only from a ConfigMap.
SV2_TP_CONF_PATH: Final = "/etc/sv2-tp/sv2-tp.conf"
# Mounted read-only from a Secret: 33 bytes, 0x01 then the 32-byte secret. The entrypoint
# copies it into sv2-tp's net datadir before sv2-tp starts.
TP_KEY_PATH: Final = "/run/secrets/sv2-tp/sv2_authority_key"
# Tells the entrypoint which net datadir sv2-tp reads its key from
# (<datadir>/<chain>, or the datadir itself on mainnet).
CHAIN_ENV: Final = "BITCOIN_CHAIN"
# Non-root user and group that own DATA_DIR and run both processes.
UID: Final = 10001
GID: Final = 10001
# Probe commands shipped in the image (see docker/bitcoin-node/node-probe).
LIVENESS_COMMAND: Final = ("node-probe", "alive")
READINESS_COMMAND: Final = ("node-probe", "ready")
# Context directory of the image build, relative to the project root.
BUILD_CONTEXT: Final = "docker/bitcoin-node"
