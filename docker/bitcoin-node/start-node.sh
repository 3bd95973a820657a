#!/bin/sh
# supervisord program "bitcoin-node": Bitcoin Core's multiprocess node, which serves
# sv2-tp over the IPC socket <net datadir>/node.sock.
set -eu
# shellcheck source-path=SCRIPTDIR source=image-contract.sh
. "$(dirname "$0")/image-contract.sh"

# A node that was killed leaves its socket behind. Remove it so that start-sv2-tp.sh waits
# for the socket of the node started here (the node makes a new one at every start).
# docs/upstream-behaviour.md#the-node-listens-on-nodesock-in-the-net-datadir-and-replaces-it-at-each-start
rm -f "$(net_datadir)/node.sock"

exec bitcoin -m node -ipcbind=unix -datadir="$NODE_DATA_DIR" -conf="$BITCOIN_CONF" \
    -printtoconsole -nodebuglogfile
