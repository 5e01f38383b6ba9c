#!/usr/bin/env bash
# Answer pending AMIE packets once. Meant for cron; overlapping runs are safe: a run that finds
# another run of the same configuration at work leaves the pending packets to it at once (exit 0),
# so a slow run never blocks or duplicates the next one.
#
#   */10 * * * *  amie  /opt/amie/lib/node_modules/amie-toolkit/examples/cron/amie-process.sh /etc/amie/amie.yaml
#
# Exit status (cron mails non-empty output, and the wrapper prints only when the status is not 0;
# the logs keep the details and one summary line per run):
#   0 every packet answered, deferred or ignored as the handler chose
#   1 a handler error, a failure reply, or a packet type the handler does not implement
#   2 amie not found (see AMIE_BIN), configuration or database problem (nothing was changed)
set -u
# The amie command: AMIE_BIN, else the first amie on the PATH (cron's PATH is only /usr/bin:/bin).
amie=${AMIE_BIN:-$(command -v amie)}
if [ ! -f "$amie" ] || [ ! -x "$amie" ]; then
  if [ -n "${AMIE_BIN:-}" ]; then why="AMIE_BIN=$AMIE_BIN is not an executable file"; else why="no amie on PATH=$PATH"; fi
  echo "${0##*/}: $why: set AMIE_BIN to the installed amie, e.g. /opt/amie/bin/amie or SITE_DIR/node_modules/.bin/amie" >&2
  exit 2
fi
config=${1:-/etc/amie/amie.yaml}
logdir=${AMIE_LOG_DIR:-/var/log/amie}
mkdir -p "$logdir"
# Quiet unless a person is needed: cron mails any output, so a clean run prints nothing. The
# JSON log lines (one per packet, with ids) go to process.log, the one-line summary to
# process-summary.log; when amie exits non-zero, the summary and amie's own error lines are
# printed too, so the mail says what happened.
errors=$(mktemp "${TMPDIR:-/tmp}/amie-process.XXXXXX") || exit 2
trap 'rm -f "$errors"' EXIT
summary=$("$amie" process -c "$config" 2>"$errors")
status=$?
cat "$errors" >>"$logdir/process.log"
[ -n "$summary" ] && printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$summary" >>"$logdir/process-summary.log"
if [ "$status" -ne 0 ]; then
  [ -n "$summary" ] && printf '%s\n' "$summary"
  grep -v '^{' "$errors" >&2
  echo "amie process exited $status; see $logdir/process.log and 'amie packets list --state in-progress'" >&2
fi
exit "$status"
