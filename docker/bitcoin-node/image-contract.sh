# shellcheck shell=sh
# Sourced by entrypoint.sh, start-node.sh, start-sv2-tp.sh and node-probe.
#
# The image side of components/image_contract.py: where the data volume and the mounted
# files are. Each path can be overridden from the environment; the tests point them at a
# temporary directory. Kubernetes runs node-probe outside the entrypoint, so every script
# takes its defaults from here rather than from the entrypoint's environment.
: "${NODE_DATA_DIR:=/data}"
: "${BITCOIN_CONF:=/etc/bitcoin/bitcoin.conf}"
: "${SV2_TP_CONF:=/etc/sv2-tp/sv2-tp.conf}"
: "${SV2_TP_KEY_SOURCE:=/run/secrets/sv2-tp/sv2_authority_key}"

# Prints the net datadir of the chain named by BITCOIN_CHAIN (a Bitcoin Core chain name):
# where the node creates node.sock and where sv2-tp reads its authority key. Mainnet has
# no sub-folder: its net datadir is the datadir itself.
# docs/upstream-behaviour.md#mainnet-has-no-net-datadir-subfolder
net_datadir() {
    case "${BITCOIN_CHAIN:-}" in
        main) printf '%s\n' "$NODE_DATA_DIR" ;;
        testnet4 | signet | regtest) printf '%s\n' "$NODE_DATA_DIR/$BITCOIN_CHAIN" ;;
        *)
            echo "BITCOIN_CHAIN must be one of main, testnet4, signet, regtest (got '${BITCOIN_CHAIN:-}')" >&2
            return 1
            ;;
    esac
}
