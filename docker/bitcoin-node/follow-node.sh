#!/bin/sh
# supervisord event listener: ties sv2-tp's lifetime to the node's. sv2-tp does not
# reconnect when the node's IPC link drops, so it is stopped when the node exits or is
# being stopped, and started when the node is RUNNING again (first start included).
# docs/upstream-behaviour.md#sv2-tp-never-reconnects-after-the-node-goes-away
#
# A program in FATAL has given up for good while the container would look alive: any
# program reaching it stops supervisord (SIGTERM, the orderly stop), after naming it in
# FATAL_NOTE so that run-supervisord exits 1 and Kubernetes restarts the container.
#
# stdout belongs to the listener protocol (READY / RESULT); messages go to stderr.
set -eu
# Event tokens are split on spaces; never expand them as file names.
set -f

# Program names in supervisord.conf.
NODE_PROGRAM=bitcoin-node
TP_PROGRAM=sv2-tp

# SUPERVISORD_CONF comes from entrypoint.sh; supervisorctl reads its server URL there.
ctl() {
    echo "follow-node: $NODE_PROGRAM is $state: $1 $TP_PROGRAM" >&2
    supervisorctl -c "$SUPERVISORD_CONF" "$1" "$TP_PROGRAM" >&2 ||
        echo "follow-node: '$1 $TP_PROGRAM' failed" >&2
}

while :; do
    printf 'READY\n'
    # Header: space-separated key:value tokens, "len" is the payload's size in bytes.
    read -r header
    len=0
    for token in $header; do
        case $token in len:*) len=${token#len:} ;; esac
    done
    # The payload has no trailing newline: read exactly len bytes.
    payload=$(dd bs=1 count="$len" 2>/dev/null)

    process='' state=''
    for token in $header $payload; do
        case $token in
            eventname:PROCESS_STATE_*) state=${token#eventname:PROCESS_STATE_} ;;
            processname:*) process=${token#processname:} ;;
        esac
    done

    if [ "$state" = FATAL ]; then
        echo "follow-node: $process is FATAL: stopping supervisord, the container exits" >&2
        printf '%s\n' "$process" >"$FATAL_NOTE"
        kill -TERM "$PPID"
    elif [ "$process" = "$NODE_PROGRAM" ]; then
        case $state in
            RUNNING) ctl start ;;
            EXITED | STOPPING) ctl stop ;;
        esac
    fi
    printf 'RESULT 2\nOK'
done
