#!/usr/bin/env bash
# Report finished Slurm jobs to the allocations service, each job exactly once. Meant for cron:
#
#   30 2 * * *  amie  /opt/amie/lib/node_modules/amie-toolkit/examples/cron/amie-report-usage.sh /etc/amie/amie.yaml
#
# Without --since each run continues where the last finished run stopped, minus
# usage.overlapHours (default 24), so jobs whose accounting record arrives late are still seen;
# jobs already reported are recognised and skipped. A run that was killed or failed is simply
# run again. The very first run looks back usage.firstRunDays (default 7); to report an older
# period once, run by hand: amie report-usage -c FILE --since 2024-01-01 --until 2024-02-01
#
# For the usage-api sink the API key is read from the variable named by usage.usageApi.apiKeyEnv;
# keep it in a file only the service user can read, e.g. /etc/amie/usage-api.env:
#   AMIE_USAGE_API_KEY=...
#
# Exit status (cron mails non-empty output; the log keeps the details):
#   0 done
#   1 sacct failed or timed out (usage.sacctTimeoutSeconds), the Usage API stayed unreachable,
#     or it refused records: see 'amie usage failed', fix the cause, then 'amie usage resend';
#     or another run holds the usage lock: the log names it and how long it has held it
#   2 amie not found (see AMIE_BIN), configuration or database problem (nothing was reported)
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
envfile=${AMIE_USAGE_ENV_FILE:-/etc/amie/usage-api.env}
mkdir -p "$logdir"
if [ -r "$envfile" ]; then
  set -a
  # shellcheck disable=SC1090
  . "$envfile"
  set +a
fi
# JSON log lines go to the log file; the summary (jobs seen, reported, skipped by reason,
# GPU-hours per project) to the summary log, and to stdout only when something went wrong.
summary=$("$amie" report-usage -c "$config" 2>>"$logdir/usage.log")
status=$?
printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$summary" >>"$logdir/usage-summary.log"
if [ "$status" -ne 0 ]; then
  printf '%s\n' "$summary"
  echo "amie report-usage exited $status; see $logdir/usage.log and 'amie usage failed'" >&2
fi
exit "$status"
