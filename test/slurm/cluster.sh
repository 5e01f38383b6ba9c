#!/usr/bin/env bash
# A real one-node Slurm cluster (accounting through slurmdbd, four pretend GPUs)
# for the tests that must see real sacct and sacctmgr output.
#
#   bash test/slurm/cluster.sh start    install if needed, configure, start; idempotent
#   bash test/slurm/cluster.sh status   exit 0 when the cluster takes jobs, 1 otherwise
#   bash test/slurm/cluster.sh stop     stop the daemons, keep packages and state
#
# Runs as root on Debian 12 (Slurm 22.05) without systemd or cgroups, so it also
# works in a CI container. All state (spool, logs, pid files, pretend GPU files)
# lives under AMIE_TEST_SLURM_DIR (default /var/tmp/amie-test-slurm); the
# configuration goes to /etc/slurm because that is where the Slurm clients look.
set -euo pipefail

STATE_DIR="${AMIE_TEST_SLURM_DIR:-/var/tmp/amie-test-slurm}"
CLUSTER=amietest
NODE=localhost
PARTITION=batch
SLURM_ETC=/etc/slurm
DB_NAME="slurm_acct_${CLUSTER}"
DB_USER="${CLUSTER}_slurmdbd"

LOG_DIR="$STATE_DIR/log"
RUN_DIR="$STATE_DIR/run"
MUNGE_DIR="$STATE_DIR/munge"
GPU_DIR="$STATE_DIR/gpu"
CTLD_STATE="$STATE_DIR/slurmctld"
SLURMD_SPOOL="$STATE_DIR/slurmd"

say() { printf '[slurm-test-cluster] %s\n' "$*"; }
die() { printf '[slurm-test-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

# Prints the tail of a daemon log after a failure, so CI output shows the cause.
show_log() {
  local file="$1"
  if [[ -s "$file" ]]; then
    printf -- '--- last lines of %s ---\n' "$file" >&2
    tail -n 30 "$file" >&2
    printf -- '--- end of %s ---\n' "$file" >&2
  else
    printf -- '(no log at %s)\n' "$file" >&2
  fi
}

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local seconds="$1" what="$2"; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      printf '[slurm-test-cluster] ERROR: %s did not happen within %ss\n' "$what" "$seconds" >&2
      return 1
    fi
    sleep 0.5
  done
}

pid_alive() {
  local file="$1" pid
  [[ -s "$file" ]] || return 1
  pid="$(tr -dc '0-9' <"$file")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

require_root() {
  [[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages and starts daemons as root)"
}

# ---------------------------------------------------------------- MariaDB ---

# Debian's root account answers on the socket (unix_socket auth); some machines
# instead allow root over TCP with an empty password. Use whichever answers.
MYSQL_ROOT=()
find_mysql_root() {
  command -v mysql >/dev/null 2>&1 || return 1
  if timeout 5 mysql -uroot -N -e 'SELECT 1' </dev/null >/dev/null 2>&1; then
    MYSQL_ROOT=(mysql -uroot)
  elif timeout 5 mysql -h127.0.0.1 -P3306 -uroot -N -e 'SELECT 1' </dev/null >/dev/null 2>&1; then
    MYSQL_ROOT=(mysql -h127.0.0.1 -P3306 -uroot)
  else
    return 1
  fi
}

start_mariadb() {
  local daemon
  daemon="$(command -v mariadbd || command -v mysqld || true)"
  [[ -n "$daemon" ]] || return 1
  say "starting MariaDB ($daemon)"
  mkdir -p /run/mysqld
  chown mysql:mysql /run/mysqld 2>/dev/null || true
  start-stop-daemon --start --oknodo --background --exec "$daemon" -- --user=mysql
  wait_for 60 "MariaDB answering as root" find_mysql_root || {
    show_log /var/log/mysql/error.log
    return 1
  }
}

ensure_mariadb() {
  find_mysql_root && return 0
  start_mariadb && return 0
  return 1
}

# --------------------------------------------------------------- packages ---

install_packages() {
  local wanted=(slurm-wlm slurmdbd munge) missing=() p
  for p in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  local need_mariadb=0
  if ! ensure_mariadb; then
    need_mariadb=1
    missing+=(mariadb-server mariadb-client)
  fi
  ((${#missing[@]} == 0)) && return 0

  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout 180 apt-get update -q </dev/null || die "apt-get update failed"
  timeout 240 apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null \
    || die "apt-get install ${missing[*]} failed"
  if ((need_mariadb)); then
    ensure_mariadb || die "MariaDB was installed but does not answer as root on the socket or 127.0.0.1:3306"
  fi
}

# ------------------------------------------------------------------ config ---

write_if_changed() {
  local file="$1" mode="$2" content="$3"
  if [[ ! -f "$file" ]] || [[ "$(cat "$file")" != "$content" ]]; then
    printf '%s\n' "$content" >"$file"
  fi
  chmod "$mode" "$file"
}

write_configs() {
  mkdir -p "$STATE_DIR" "$LOG_DIR" "$RUN_DIR" "$GPU_DIR" "$CTLD_STATE" "$SLURMD_SPOOL" "$SLURM_ETC"
  chmod 755 "$STATE_DIR"
  local i
  for i in 0 1 2 3; do : >>"$GPU_DIR/fakegpu$i"; done

  # The slurmdbd password is created once per state directory and set on the
  # MariaDB account at every start, so a wiped directory still works.
  if [[ ! -s "$STATE_DIR/slurmdbd.pass" ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE_DIR/slurmdbd.pass")
  fi
  DB_PASS="$(cat "$STATE_DIR/slurmdbd.pass")"

  # config_overrides: the node is whatever this file says, so a CI machine
  # with fewer cores or less memory does not get the node marked invalid.
  write_if_changed "$SLURM_ETC/slurm.conf" 644 "# One-node test cluster written by test/slurm/cluster.sh; rewritten on every start.
ClusterName=$CLUSTER
SlurmctldHost=$NODE
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$CTLD_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$NODE
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations,limits
JobCompType=jobcomp/none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$NODE CPUs=4 RealMemory=2000 Gres=gpu:4 State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"

  write_if_changed "$SLURM_ETC/gres.conf" 644 "NodeName=$NODE Name=gpu File=$GPU_DIR/fakegpu[0-3]"

  # slurmdbd refuses a config that others can read (it holds the password).
  write_if_changed "$SLURM_ETC/slurmdbd.conf" 600 "# Written by test/slurm/cluster.sh; rewritten on every start.
AuthType=auth/munge
DbdHost=$NODE
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=$RUN_DIR/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=$DB_NAME"
  chown root:root "$SLURM_ETC/slurmdbd.conf"
}

setup_database() {
  # A state directory without controller state means a new cluster: start its
  # accounting from nothing too, so job ids in sacct are never from an old run.
  if [[ ! -e "$CTLD_STATE/.amie-initialised" ]]; then
    say "new state directory: resetting accounting database $DB_NAME"
    "${MYSQL_ROOT[@]}" -e "DROP DATABASE IF EXISTS \`$DB_NAME\`" </dev/null
  fi
  "${MYSQL_ROOT[@]}" </dev/null -e "
    CREATE DATABASE IF NOT EXISTS \`$DB_NAME\`;
    CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
    CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    ALTER USER '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
    ALTER USER '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
    GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'localhost';
    GRANT ALL ON \`$DB_NAME\`.* TO '$DB_USER'@'127.0.0.1';
    FLUSH PRIVILEGES;" || die "could not create MariaDB database $DB_NAME and user $DB_USER"
}

# ----------------------------------------------------------------- daemons ---

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
  mkdir -p /etc/munge /var/log/munge /run/munge /var/lib/munge "$MUNGE_DIR"
  if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    head -c 1024 /dev/urandom >/etc/munge/munge.key
  fi
  chown munge:munge /etc/munge /etc/munge/munge.key /var/log/munge /run/munge /var/lib/munge "$MUNGE_DIR"
  chmod 700 /etc/munge "$MUNGE_DIR"
  chmod 400 /etc/munge/munge.key
  chmod 755 /run/munge
  if munge_works; then
    pid_alive "$RUN_DIR/munged.pid" || say "munged: a munged already answers on the default socket; using it"
    return 0
  fi
  say "starting munged"
  rm -f "$MUNGE_DIR/munged.pid"
  runuser -u munge -- munged --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" \
    --seed-file=/var/lib/munge/munged.seed </dev/null \
    || { show_log "$MUNGE_DIR/munged.log"; die "munged did not start"; }
  wait_for 20 "munged answering" munge_works || { show_log "$MUNGE_DIR/munged.log"; die "munged does not answer"; }
  # The pid file has to live where munged (as the munge user) may write; link it for stop/status.
  ln -sf "$MUNGE_DIR/munged.pid" "$RUN_DIR/munged.pid"
}

sacctmgr_works() { timeout 10 sacctmgr -n -P show cluster format=cluster </dev/null >/dev/null 2>&1; }

start_slurmdbd() {
  if ! pid_alive "$RUN_DIR/slurmdbd.pid"; then
    say "starting slurmdbd"
    slurmdbd </dev/null || { show_log "$LOG_DIR/slurmdbd.log"; die "slurmdbd did not start"; }
  fi
  wait_for 60 "slurmdbd answering sacctmgr" sacctmgr_works \
    || { show_log "$LOG_DIR/slurmdbd.log"; die "slurmdbd does not answer (see its log above)"; }
}

add_cluster() {
  if timeout 10 sacctmgr -n -P show cluster format=cluster </dev/null | grep -qx "$CLUSTER"; then
    return 0
  fi
  say "adding cluster $CLUSTER to the accounting database"
  timeout 30 sacctmgr -i add cluster "$CLUSTER" </dev/null || die "sacctmgr add cluster $CLUSTER failed"
}

ctld_up() { timeout 5 scontrol ping </dev/null 2>/dev/null | grep -q 'is UP'; }

start_slurmctld() {
  if ! pid_alive "$RUN_DIR/slurmctld.pid"; then
    say "starting slurmctld"
    slurmctld </dev/null || { show_log "$LOG_DIR/slurmctld.log"; die "slurmctld did not start"; }
  elif [[ "$SLURM_ETC/slurm.conf" -nt "$RUN_DIR/slurmctld.pid" ]]; then
    # A running controller reads some settings (AccountingStorageEnforce among them) only when
    # it starts, not on `scontrol reconfigure`: restart it on a newer slurm.conf.
    say "slurm.conf is newer than the running slurmctld: restarting it"
    stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
    slurmctld </dev/null || { show_log "$LOG_DIR/slurmctld.log"; die "slurmctld did not start"; }
  fi
  wait_for 60 "slurmctld answering scontrol ping" ctld_up \
    || { show_log "$LOG_DIR/slurmctld.log"; die "slurmctld does not answer"; }
  touch "$CTLD_STATE/.amie-initialised"
}

start_slurmd() {
  if ! pid_alive "$RUN_DIR/slurmd.pid"; then
    say "starting slurmd"
    slurmd -N "$NODE" </dev/null || { show_log "$LOG_DIR/slurmd.log"; die "slurmd did not start"; }
  fi
}

node_state() { timeout 5 sinfo -h -n "$NODE" -o %T </dev/null 2>/dev/null | head -n1; }
node_usable() { [[ "$(node_state)" =~ ^(idle|mixed|allocated|completing)$ ]]; }

wait_node_ready() {
  local deadline=$((SECONDS + 90)) state resumed=0
  while :; do
    state="$(node_state || true)"
    case "$state" in
      idle | mixed | allocated | completing) say "node $NODE is $state"; return 0 ;;
      down | drained | draining | drain | "down+drain" | fail | failing)
        # A node that answers but is still down or drained from an earlier run.
        if ((resumed < 3)); then
          say "node $NODE is $state; resuming it"
          timeout 10 scontrol update nodename="$NODE" state=resume </dev/null || true
          resumed=$((resumed + 1))
        fi ;;
    esac
    if ((SECONDS >= deadline)); then
      printf '[slurm-test-cluster] ERROR: node %s is "%s", not idle, after 90s\n' "$NODE" "$state" >&2
      timeout 5 scontrol show node "$NODE" </dev/null >&2 || true
      show_log "$LOG_DIR/slurmd.log"
      show_log "$LOG_DIR/slurmctld.log"
      exit 1
    fi
    sleep 1
  done
}

stop_pidfile() {
  local name="$1" file="$2" pid i
  if ! pid_alive "$file"; then
    say "$name: not running"
    rm -f "$file"
    return 0
  fi
  pid="$(tr -dc '0-9' <"$file")"
  say "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$file"; return 0; }
    sleep 0.5
  done
  say "$name did not stop within 30s; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

# ---------------------------------------------------------------- commands ---

cmd_start() {
  require_root
  local started=$SECONDS
  install_packages
  ensure_mariadb || die "no MariaDB answers as root (socket or 127.0.0.1:3306) and none could be started"
  write_configs
  setup_database
  start_munge
  start_slurmdbd
  add_cluster
  start_slurmctld
  start_slurmd
  wait_node_ready
  say "cluster $CLUSTER is up ($((SECONDS - started))s); state in $STATE_DIR"
}

cmd_stop() {
  require_root
  stop_pidfile slurmd "$RUN_DIR/slurmd.pid"
  stop_pidfile slurmctld "$RUN_DIR/slurmctld.pid"
  stop_pidfile slurmdbd "$RUN_DIR/slurmdbd.pid"
  stop_pidfile munged "$MUNGE_DIR/munged.pid"
  rm -f "$RUN_DIR/munged.pid"
}

cmd_status() {
  local ok=0 name file
  for name in munged slurmdbd slurmctld slurmd; do
    file="$RUN_DIR/$name.pid"
    [[ $name == munged ]] && file="$MUNGE_DIR/munged.pid"
    if pid_alive "$file"; then
      printf '%-10s running (pid %s)\n' "$name" "$(tr -dc '0-9' <"$file")"
    elif [[ $name == munged ]] && munge_works; then
      printf '%-10s running (started outside this script)\n' "$name"
    else
      printf '%-10s not running\n' "$name"
      ok=1
    fi
  done
  if command -v sinfo >/dev/null 2>&1; then
    timeout 5 sinfo </dev/null || ok=1
    if node_usable; then
      echo "cluster $CLUSTER is usable"
    else
      echo "cluster $CLUSTER is NOT usable (node $NODE: $(node_state || echo unknown))"
      ok=1
    fi
  else
    echo "sinfo is not installed"
    ok=1
  fi
  return "$ok"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
