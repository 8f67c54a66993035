# Shared by infra/*/*.sh (sourced): process helpers.

# Whether process $1 is alive. An exited process not reaped yet (a zombie: its
# sockets and files are closed, its port free) counts as gone: a daemon is
# reparented to init, which may reap it only a couple of seconds later.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local stat; stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
  stat="${stat##*) }"
  [ "${stat%% *}" != Z ]
}
