#!/usr/bin/env bash
# Answer pending AMIE packets with the Slurm handler (config/slurm-site.yaml). Meant for cron,
# as root or as a service user allowed to run sacctmgr, scancel, useradd/usermod (or your
# createUser command) and to write the grid-mapfile:
#
#   */10 * * * *  root  /opt/amie/lib/node_modules/amie-toolkit/examples/cron/amie-slurm.sh /etc/amie/slurm-site.yaml
#
# Two things differ from amie-process.sh:
# - cron's PATH lacks /usr/sbin and often the Slurm binaries, where useradd and sacctmgr live;
#   AMIE_SLURM_PATH (default /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) is used.
# - When Slurm's accounting (slurmdbd) does not answer, the run is skipped: every packet would
#   fail on sacctmgr and use up one of its process.maxErrorDeferrals, and after those it would
#   be answered with a failure. The next run tries again.
#
# Exit status (cron mails non-empty output, and the wrapper prints only when a person is needed;
# the logs keep the details and one summary line per run):
#   0 every packet answered, deferred or ignored as the handler chose (or the run was skipped
#     because slurmdbd is down: a line is written to stderr, so cron mails it)
#   1 a handler error (a command failed: the packet is deferred, the command and its stderr are
#     in 'amie packets show ID'), a failure reply, or an unhandled packet type
#   2 amie not found (see AMIE_BIN), configuration or database problem (nothing was changed)
set -u
# The amie command: AMIE_BIN, else the first amie on the PATH (cron's PATH is only /usr/bin:/bin).
amie=${AMIE_BIN:-$(command -v amie)}
if [ ! -f "$amie" ] || [ ! -x "$amie" ]; then
  if [ -n "${AMIE_BIN:-}" ]; then why="AMIE_BIN=$AMIE_BIN is not an executable file"; else why="no amie on PATH=$PATH"; fi
  echo "${0##*/}: $why: set AMIE_BIN to the installed amie, e.g. /opt/amie/bin/amie or SITE_DIR/node_modules/.bin/amie" >&2
  exit 2
fi
config=${1:-/etc/amie/slurm-site.yaml}
logdir=${AMIE_LOG_DIR:-/var/log/amie}
export PATH=${AMIE_SLURM_PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
mkdir -p "$logdir"

if ! timeout 30 sacctmgr -n -P show cluster format=cluster </dev/null >/dev/null 2>>"$logdir/process.log"; then
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) sacctmgr does not answer (is slurmdbd up?): packets left for the next run" >&2
  exit 0
fi

# Quiet unless a person is needed: cron mails any output, so a clean run prints nothing. The
# JSON log lines (one per packet, one per command at debug level) go to process.log, the
# one-line summary to process-summary.log; when amie exits non-zero, the summary and amie's own
# error lines are printed too, so the mail says what happened.
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
