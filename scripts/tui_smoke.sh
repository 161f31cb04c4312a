#!/usr/bin/env bash
# Run the app in a real terminal (tmux, 120x40 or $SMOKE_SIZE, e.g. 80x24), send keys,
# capture the screen.
#
#   scripts/tui_smoke.sh OUTDIR [STEP ...] [-- USBWRITER-ARGS ...]
#
# STEPs run in order:
#   wait=TEXT        wait (up to $SMOKE_TIMEOUT s, default 30) until the screen shows TEXT
#   keys=K1,K2,...   send tmux key names (Enter, Escape, Tab, Down, F1, C-q, q ...)
#   type=TEXT        type TEXT literally
#   repeat=KEYS@TEXT send KEYS (as keys=) until the screen shows TEXT, at most 40 times
#   capture=NAME     save the screen as OUTDIR/NAME.txt
#   sleep=SECONDS    pause
# Without STEPs: show the main screen, open and close the help, quit.
# The app runs as `python -m usbwriter USBWRITER-ARGS`; when it exits the pane shows
# "[usbwriter exited N]". tmux runs on its own socket, killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 1 ]; then
    echo "usage: $0 OUTDIR [STEP ...] [-- USBWRITER-ARGS ...]" >&2
    exit 2
fi
out=$1
shift
steps=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    steps+=("$1")
    shift
done
if [ "${1:-}" = "--" ]; then shift; fi
args=("$@")
if [ ${#steps[@]} -eq 0 ]; then
    steps=(wait=Drives sleep=1 capture=main keys=F1 wait="Three steps" capture=help
        keys=Escape sleep=0.5 keys=C-q wait="[usbwriter exited" capture=exit)
fi

python=${PYTHON:-.venv/bin/python}
timeout=${SMOKE_TIMEOUT:-30}
size=${SMOKE_SIZE:-120x40}
socket="usbwriter-smoke-$$"
mkdir -p "$out"
tmux_() { tmux -L "$socket" "$@"; }
trap 'tmux_ kill-server 2>/dev/null || true' EXIT

cmd=$(printf '%q ' "$python" -m usbwriter "${args[@]}")
tmux_ -f /dev/null new-session -d -s smoke -x "${size%x*}" -y "${size#*x}" \
    "TERM=xterm-256color $cmd; echo \"[usbwriter exited \$?]\"; sleep 600"

screen() { tmux_ capture-pane -p -t smoke; }

for step in "${steps[@]}"; do
    kind=${step%%=*}
    value=${step#*=}
    case $kind in
    wait)
        deadline=$((SECONDS + timeout))
        until screen | grep -qF -- "$value"; do
            if [ $SECONDS -ge $deadline ]; then
                screen >"$out/timeout.txt"
                echo "tui_smoke: timed out waiting for '$value' (screen in $out/timeout.txt)" >&2
                exit 1
            fi
            sleep 0.2
        done
        ;;
    keys)
        IFS=, read -r -a keys <<<"$value"
        for k in "${keys[@]}"; do
            tmux_ send-keys -t smoke "$k"
            sleep 0.15
        done
        ;;
    repeat)
        keys_part=${value%%@*}
        text=${value#*@}
        IFS=, read -r -a keys <<<"$keys_part"
        tries=0
        until screen | grep -qF -- "$text"; do
            if [ $tries -ge 40 ]; then
                screen >"$out/timeout.txt"
                echo "tui_smoke: '$text' not shown after 40 rounds of $keys_part" >&2
                exit 1
            fi
            for k in "${keys[@]}"; do
                tmux_ send-keys -t smoke "$k"
                sleep 0.15
            done
            sleep 0.2
            tries=$((tries + 1))
        done
        ;;
    type) tmux_ send-keys -t smoke -l "$value" ;;
    capture) screen >"$out/$value.txt" ;;
    sleep) sleep "$value" ;;
    *)
        echo "tui_smoke: unknown step '$step'" >&2
        exit 2
        ;;
    esac
done
echo "tui_smoke: ok (${#steps[@]} steps, screens in $out)"
