# shellcheck shell=bash
# Helpers shared by deploy/local/up, down and status. Source it after lib.sh; do not run it.

# Every service, in dependency order (a later one may use an earlier one).
STACK_SERVICES=(postgres s3 mlflow-server kafka opensearch elasticsearch elasticsearch9 shipper registry kubernetes airflow)

# stack_targets [SVC...]: the named services (in dependency order, unknown names last, as given),
# or every service when none is named.
stack_targets() {
  local svc known
  if [ $# -eq 0 ]; then printf '%s\n' "${STACK_SERVICES[@]}"; return; fi
  for svc in "$@"; do
    case "$svc" in */*|.*|lib.sh|stack.sh|up|down|status) die "not a service: $svc" ;; esac
  done
  for known in "${STACK_SERVICES[@]}"; do
    for svc in "$@"; do [ "$svc" = "$known" ] && { echo "$svc"; break; }; done
  done
  for svc in "$@"; do
    case " ${STACK_SERVICES[*]} " in *" $svc "*) ;; *) echo "$svc" ;; esac
  done
}

# stack_table HEADER ROW...: print '|'-separated rows as an aligned table on stdout
stack_table() {
  printf '%s\n' "$@" | awk -F'|' '
    { for (i = 1; i <= NF; i++) { cell[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } n = NF > n ? NF : n }
    END { for (r = 1; r <= NR; r++) { line = ""
            for (i = 1; i <= n; i++) line = line sprintf(i < n ? "%-" w[i] "s  " : "%s", cell[r, i])
            print line } }'
}
