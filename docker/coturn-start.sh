#!/bin/sh
# coturn's start in docker/compose.yaml (its entrypoint): the mounted turnserver.conf plus
# `static-auth-secret=<the compose secret turn_secret>`, the secret the gateway's entrypoint
# installs as its keys/turn.secret. The combined file is written to a tmpfs, readable by
# coturn's user only: the secret never lands on disk nor on a command line (`ps` on the host
# shows every container's command lines).
set -eu

secret_file="${TURN_SECRET_FILE:-/run/secrets/turn_secret}"
base_config="${TURN_BASE_CONFIG:-/etc/coturn/turnserver.conf}"
run_dir="${TURN_RUN_DIR:-/var/lib/coturn}"

if [ ! -f "$secret_file" ] || [ ! -r "$secret_file" ]; then
    echo "error: $secret_file is not a file readable by uid $(id -u); see docker/README.md" >&2
    exit 1
fi
secret="$(cat "$secret_file")"
# The same rule as the gateway's entrypoint: letters and digits, at least 32 of them.
case "$secret" in
    *[!0-9A-Za-z]* | "")
        echo "error: $secret_file must hold one line of letters and digits" \
            "(openssl rand -hex 32)" >&2
        exit 1
        ;;
esac
if [ "${#secret}" -lt 32 ]; then
    echo "error: $secret_file is shorter than 32 characters (openssl rand -hex 32)" >&2
    exit 1
fi

umask 077
config="$run_dir/turnserver.conf"
{
    cat "$base_config"
    printf '\nstatic-auth-secret=%s\n' "$secret"
} >"$config"

set -- -c "$config"
# Behind 1:1 NAT (most cloud VMs) coturn must announce the public address.
if [ -n "${TURN_EXTERNAL_IP:-}" ]; then
    set -- "$@" "--external-ip=$TURN_EXTERNAL_IP"
fi
exec turnserver "$@"
