#!/bin/sh
# supervisord program "sv2-tp": waits for the node's IPC socket, installs the Template
# Provider's authority key from the mounted Secret, then becomes sv2-tp.
set -eu
# shellcheck source-path=SCRIPTDIR source=image-contract.sh
. "$(dirname "$0")/image-contract.sh"

# Seconds to wait for node.sock before giving up (supervisord then starts this again),
# and seconds between two looks.
: "${SV2_TP_SOCKET_WAIT:=300}"
: "${SV2_TP_SOCKET_POLL:=1}"

log() { echo "start-sv2-tp: $*" >&2; }

net_dir=$(net_datadir)
socket=$net_dir/node.sock
key=$net_dir/sv2_authority_key

# The pool is given the public half of this key, so sv2-tp must not start with any other
# one: sv2-tp would generate its own when the file is missing.
# docs/upstream-behaviour.md#sv2-tp-loads-its-authority-key-from-a-file-in-the-net-datadir
if [ ! -f "$SV2_TP_KEY_SOURCE" ] || [ ! -r "$SV2_TP_KEY_SOURCE" ]; then
    log "refusing to start: authority key $SV2_TP_KEY_SOURCE is missing or unreadable"
    exit 1
fi
key_size=$(($(wc -c <"$SV2_TP_KEY_SOURCE")))
key_version=$(od -An -tx1 -N1 "$SV2_TP_KEY_SOURCE" | tr -d ' \n')
if [ "$key_size" -ne 33 ] || [ "$key_version" != 01 ]; then
    log "refusing to start: authority key $SV2_TP_KEY_SOURCE must be 33 bytes, 0x01 then the" \
        "32-byte secret (it is $key_size bytes, first byte 0x${key_version:-none})"
    exit 1
fi

# Start sv2-tp once the node listens (on its own, sv2-tp retries only every 10 s). The wait
# is bounded so that a node that never comes up is reported at every attempt.
# docs/upstream-behaviour.md#sv2-tp-connects-to-the-node-socket-in-the-net-datadir-and-retries-every-10-s
if [ ! -S "$socket" ]; then
    log "waiting up to ${SV2_TP_SOCKET_WAIT}s for the node's IPC socket $socket"
    deadline=$(($(date +%s) + SV2_TP_SOCKET_WAIT))
    while [ ! -S "$socket" ]; do
        if [ "$(date +%s)" -gt "$deadline" ]; then
            log "giving up: $socket did not appear within ${SV2_TP_SOCKET_WAIT}s"
            exit 1
        fi
        sleep "$SV2_TP_SOCKET_POLL"
    done
fi

# Replace the key at every start (the Secret may have changed); write it under another
# name first so sv2-tp never sees a partial file.
umask 077
cp "$SV2_TP_KEY_SOURCE" "$key.new"
chmod 0600 "$key.new"
mv -f "$key.new" "$key"
log "installed the authority key as $key; starting sv2-tp"

# Its log goes to the container's output only: without -debuglogfile=0 sv2-tp also writes
# sv2-debug.log into the net datadir, on the chain volume (seen with the real binary).
# Below the node's priority: with a pool connected sv2-tp keeps a core busy, and must not
# take the node's CPU time in the container they share.
# docs/upstream-behaviour.md#sv2-tp-keeps-a-core-busy-while-a-client-is-connected
exec nice -n 10 sv2-tp -datadir="$NODE_DATA_DIR" -conf="$SV2_TP_CONF" -printtoconsole -debuglogfile=0
