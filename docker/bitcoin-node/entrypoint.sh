#!/bin/sh
# Container entrypoint: checks the environment, then replaces itself with supervisord
# (PID 1, through run-supervisord), which runs the node, sv2-tp and the follow-node event
# listener as this user.
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
# Failed starts in a row, after the first, before a program is FATAL and the container exits.
: "${STARTRETRIES:=3}"
# follow-node's supervisorctl reads the same file.
: "${SUPERVISORD_CONF:=/etc/supervisor/supervisord.conf}"
# Where follow-node names a program that reached FATAL, for run-supervisord's exit status.
# The run dir may be an emptyDir, which outlives the container: forget an earlier note.
FATAL_NOTE=$SUPERVISOR_RUN_DIR/fatal-program
rm -f "$FATAL_NOTE"
export NODE_STARTSECS STARTRETRIES SUPERVISORD_CONF FATAL_NOTE

exec run-supervisord "$SUPERVISORD_CONF"
