#!/bin/sh
# The gateway container's start (docker/Dockerfile ENTRYPOINT):
#   1. `telegate keys init`: create the log key on the first start (its vkey goes to the log);
#   2. install the TURN REST secret shared with coturn, if one is mounted, as the gateway's
#      <data dir>/keys/turn.secret, so both sides compute the same credentials;
#   3. `exec telegate serve --host 0.0.0.0`: the gateway becomes PID 1 and gets SIGTERM itself.
# Arguments that start with '-' go to `telegate serve`; any other command runs instead, so
# `docker compose run --rm gateway telegate invite admin` works on the same image and volume.
set -eu

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "$@"
fi

# compose.yaml mounts the secret here (`secrets: [turn_secret]`).
secret_file="${TURN_SECRET_FILE:-/run/secrets/turn_secret}"
key_dir="${TELEGATE_DATA_DIR:-data}/keys"

telegate keys init

if [ -e "$secret_file" ]; then
    if [ ! -f "$secret_file" ] || [ ! -r "$secret_file" ]; then
        echo "error: $secret_file is not a file readable by uid $(id -u); see docker/README.md" >&2
        exit 1
    fi
    secret="$(cat "$secret_file")"
    # coturn reads static-auth-secret from a config line and the gateway strips whitespace:
    # letters and digits only, so both see exactly the same bytes.
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
    printf '%s\n' "$secret" >"$key_dir/turn.secret.new"
    mv -f "$key_dir/turn.secret.new" "$key_dir/turn.secret"
fi

exec telegate serve --host 0.0.0.0 "$@"
