#!/bin/sh
# Container entrypoint: checks the environment, then replaces itself with supervisord
# (PID 1), which runs the node, sv2-tp and the follow-node event listener as this user.
set -eu
# shellcheck source-path=SCRIPTDIR source=image-contract.sh
. "$(dirname "$0")/image-contract.sh"

# Fail now rather than in a restart loop: the key's place depends on the chain.
net_datadir >/dev/null

# supervisord.conf expands these. SUPERVISOR_RUN_DIR (pidfile and control socket) comes
# from the Dockerfile, so that supervisorctl finds it in `kubectl exec` sessions too.
: "${SUPERVISOR_RUN_DIR:?must name a writable directory}"
# How long the node must stay up to count as started; sv2-tp is started only then.
: "${NODE_STARTSECS:=5}"
# follow-node's supervisorctl reads the same file.
: "${SUPERVISORD_CONF:=/etc/supervisor/supervisord.conf}"
export NODE_STARTSECS SUPERVISORD_CONF

exec supervisord -c "$SUPERVISORD_CONF"
