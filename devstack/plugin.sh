#!/bin/bash
#
# devstack plugin of Zaqar in Rust: builds (or takes) zaqar-server, writes
# /etc/zaqar/zaqar.conf, registers the messaging services in Keystone and
# runs the server as a devstack systemd unit.
#
# local.conf:
#
#     [[local|localrc]]
#     enable_plugin zaqar <url of this repository> [branch]
#     # optional: ZAQAR_BACKEND=redis, ZAQAR_BIN=/path/to/zaqar-server,
#     # LIBS_FROM_GIT=python-zaqarclient,zaqar-tempest-plugin
#
# Phases (devstack calls this file with them):
#   stack install     -> install_zaqar (binary, client)
#   stack post-config -> configure_zaqar, create_zaqar_accounts
#   stack extra       -> start_zaqar (and wait for GET /v2/ping)
#   stack test-config -> install_zaqar_tempest_plugin, configure_tempest_for_zaqar
#   unstack           -> stop_zaqar
#   clean             -> cleanup_zaqar
#
# Functions and variables not defined here (iniset, run_process,
# is_service_enabled, DATA_DIR, SERVICE_HOST, ...) are devstack's.

# The ZAQAR_* variables are set in ./settings, which devstack sources first.
# shellcheck disable=SC2153

# Save trace setting
_XTRACE_ZAQAR=$(set +o | grep xtrace)
set +o xtrace

# The devstack service name the server runs under: zaqar-wsgi when the HTTP
# API is enabled, else zaqar-websocket. Its unit is devstack@<name>.service.
function zaqar_process_name {
    if is_service_enabled zaqar-wsgi; then
        echo zaqar-wsgi
    else
        echo zaqar-websocket
    fi
}

# The [drivers] transport value for the enabled services.
function zaqar_transports {
    local transports=()
    if is_service_enabled zaqar-wsgi; then
        transports+=(wsgi)
    fi
    if is_service_enabled zaqar-websocket; then
        transports+=(websocket)
    fi
    local IFS=,
    echo "${transports[*]}"
}

# install_rust_toolchain - makes cargo available to the stack user.
function install_rust_toolchain {
    if command -v cargo >/dev/null 2>&1; then
        return 0
    fi
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        export PATH="$HOME/.cargo/bin:$PATH"
        return 0
    fi
    if [[ "$ZAQAR_INSTALL_RUSTUP" != "True" ]]; then
        die $LINENO "cargo not found: install Rust (the rust-version of Cargo.toml or newer), set ZAQAR_BIN to a prebuilt zaqar-server, or set ZAQAR_INSTALL_RUSTUP=True to install one with rustup"
    fi
    echo "Installing a Rust toolchain with rustup for $USER"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
        | sh -s -- -y --profile minimal --no-modify-path
    export PATH="$HOME/.cargo/bin:$PATH"
}

# build_zaqar - builds zaqar-server from $ZAQAR_DIR; prints the binary's path.
function build_zaqar {
    install_rust_toolchain >&2
    # SQLite and mimalloc are compiled in (a C compiler); TLS is rustls,
    # so no OpenSSL headers.
    install_package gcc >&2
    local target_dir=release
    if [[ "$ZAQAR_CARGO_PROFILE" == "dev" ]]; then
        target_dir=debug
    fi
    # --locked: the dependency versions of Cargo.lock, never newer ones.
    (cd "$ZAQAR_DIR" && cargo build --locked --profile "$ZAQAR_CARGO_PROFILE" --bin zaqar-server) >&2 \
        || die $LINENO "cargo build of zaqar-server failed"
    echo "$ZAQAR_DIR/target/$target_dir/zaqar-server"
}

# install_zaqar - puts zaqar-server in $ZAQAR_BIN_DIR and installs the client.
function install_zaqar {
    local bin
    if [[ -n "$ZAQAR_BIN" ]]; then
        [[ -x "$ZAQAR_BIN" ]] || die $LINENO "ZAQAR_BIN=$ZAQAR_BIN is not an executable file"
        bin=$ZAQAR_BIN
    else
        bin=$(build_zaqar)
    fi
    sudo install -D -m 0755 "$bin" "$ZAQAR_BIN_DIR/zaqar-server"
    "$ZAQAR_BIN_DIR/zaqar-server" --version

    if [[ "$ZAQAR_BACKEND" == "redis" && "$ZAQAR_INSTALL_REDIS" == "True" ]]; then
        install_zaqar_redis
    fi
    # `openstack messaging ...` and the tests use the reference's client,
    # from git when LIBS_FROM_GIT names it.
    if use_library_from_git "python-zaqarclient"; then
        git_clone_by_name "python-zaqarclient"
        setup_dev_lib "python-zaqarclient"
    else
        pip_install_gr python-zaqarclient
    fi
}

# install_zaqar_tempest_plugin - zaqar-tempest-plugin into tempest's venv,
# from git when LIBS_FROM_GIT names it, else the released package.
function install_zaqar_tempest_plugin {
    local spec=zaqar-tempest-plugin
    if use_library_from_git "zaqar-tempest-plugin"; then
        git_clone_by_name "zaqar-tempest-plugin"
        spec=${GITDIR["zaqar-tempest-plugin"]}
    fi
    (cd "$TEMPEST_DIR" && tox -evenv-tempest -- pip install "$spec") \
        || die $LINENO "cannot install zaqar-tempest-plugin into tempest's venv"
}

# install_zaqar_redis - a local Redis for ZAQAR_BACKEND=redis.
function install_zaqar_redis {
    if is_ubuntu; then
        install_package redis-server
        restart_service redis-server
    elif is_fedora; then
        install_package redis
        restart_service redis
    else
        exit_distro_not_supported "redis installation"
    fi
}

# configure_zaqar - writes $ZAQAR_CONF from scratch.
function configure_zaqar {
    sudo install -d -o "$STACK_USER" -m 755 "$ZAQAR_CONF_DIR"
    sudo install -d -o "$STACK_USER" -m 750 "$ZAQAR_DATA_DIR"
    rm -f "$ZAQAR_CONF"
    touch "$ZAQAR_CONF"

    iniset "$ZAQAR_CONF" DEFAULT admin_mode "$ZAQAR_ADMIN_MODE"
    iniset "$ZAQAR_CONF" DEFAULT debug "$ENABLE_DEBUG_LOG_LEVEL"
    if is_service_enabled keystone; then
        iniset "$ZAQAR_CONF" DEFAULT auth_strategy keystone
    else
        iniset "$ZAQAR_CONF" DEFAULT auth_strategy ""
    fi
    iniset "$ZAQAR_CONF" signed_url secret_key "$ZAQAR_SIGNED_URL_SECRET_KEY"
    if [[ "$ZAQAR_ENABLE_NOTIFIER" == "True" ]]; then
        iniset "$ZAQAR_CONF" storage message_pipeline zaqar.notification.notifier
    fi
    # Addresses only: a host name in this list stops the server, so a
    # ZAQAR_SERVICE_HOST that is a name is left out.
    local net nets=()
    for net in ${ZAQAR_ALLOWED_SUBSCRIBER_NETWORKS//,/ }; do
        if [[ "$net" =~ ^[0-9.]+(/[0-9]+)?$ || "$net" == *:* ]]; then
            nets+=("$net")
        else
            warn $LINENO "ZAQAR_ALLOWED_SUBSCRIBER_NETWORKS: $net is not an address, left out"
        fi
    done
    if (( ${#nets[@]} )); then
        iniset "$ZAQAR_CONF" notification allowed_subscriber_networks "$(IFS=,; echo "${nets[*]}")"
    fi

    iniset "$ZAQAR_CONF" drivers transport "$(zaqar_transports)"
    iniset "$ZAQAR_CONF" drivers:transport:wsgi bind "$ZAQAR_SERVICE_LISTEN_ADDRESS"
    # Behind tls-proxy the server listens on the internal port and Apache
    # terminates TLS on the public one.
    if is_service_enabled tls-proxy; then
        iniset "$ZAQAR_CONF" drivers:transport:wsgi port "$ZAQAR_SERVICE_PORT_INT"
    else
        iniset "$ZAQAR_CONF" drivers:transport:wsgi port "$ZAQAR_SERVICE_PORT"
    fi
    iniset "$ZAQAR_CONF" drivers:transport:websocket bind "$ZAQAR_SERVICE_LISTEN_ADDRESS"
    iniset "$ZAQAR_CONF" drivers:transport:websocket port "$ZAQAR_WEBSOCKET_PORT"

    case "$ZAQAR_BACKEND" in
        sqlite)
            iniset "$ZAQAR_CONF" drivers message_store sqlite
            iniset "$ZAQAR_CONF" drivers management_store sqlite
            iniset "$ZAQAR_CONF" drivers:message_store:sqlite uri "$ZAQAR_DATA_DIR/zaqar.sqlite"
            ;;
        redis)
            iniset "$ZAQAR_CONF" drivers message_store redis
            iniset "$ZAQAR_CONF" drivers management_store redis
            iniset "$ZAQAR_CONF" drivers:message_store:redis uri "$ZAQAR_REDIS_URI"
            iniset "$ZAQAR_CONF" drivers:management_store:redis uri "$ZAQAR_REDIS_URI"
            ;;
        *)
            die $LINENO "ZAQAR_BACKEND=$ZAQAR_BACKEND is not supported (sqlite or redis)"
            ;;
    esac

    if is_service_enabled keystone; then
        configure_keystone_authtoken_middleware "$ZAQAR_CONF" zaqar
        # devstack names its CA bundle even when TLS is off and the file does
        # not exist; the server refuses a cafile it cannot read.
        if [[ ! -f "$SSL_BUNDLE_FILE" ]]; then
            inidelete "$ZAQAR_CONF" keystone_authtoken cafile
        fi
        iniset "$ZAQAR_CONF" trustee auth_type password
        iniset "$ZAQAR_CONF" trustee auth_url "$KEYSTONE_SERVICE_URI"
        iniset "$ZAQAR_CONF" trustee username "$ZAQAR_TRUSTEE_USER"
        iniset "$ZAQAR_CONF" trustee password "$ZAQAR_TRUSTEE_PASSWORD"
        iniset "$ZAQAR_CONF" trustee user_domain_id "$ZAQAR_TRUSTEE_DOMAIN"
    fi
}

# create_zaqar_accounts - the service user and the two catalogue services.
function create_zaqar_accounts {
    create_service_user "zaqar"

    local zaqar_service zaqar_ws_service
    if is_service_enabled zaqar-wsgi; then
        zaqar_service=$(get_or_create_service "zaqar" "messaging" "Zaqar Service")
        get_or_create_endpoint "$zaqar_service" "$REGION_NAME" \
            "$ZAQAR_SERVICE_PROTOCOL://$ZAQAR_SERVICE_HOST:$ZAQAR_SERVICE_PORT"
    fi
    if is_service_enabled zaqar-websocket; then
        zaqar_ws_service=$(get_or_create_service "zaqar-websocket" \
            "messaging-websocket" "Zaqar Websocket Service")
        # The WebSocket listener is not behind tls-proxy: plain ws.
        get_or_create_endpoint "$zaqar_ws_service" "$REGION_NAME" \
            "ws://$ZAQAR_SERVICE_HOST:$ZAQAR_WEBSOCKET_PORT"
    fi
}

# start_zaqar - one process for both APIs, under systemd, then wait for ping.
function start_zaqar {
    # run_process NAME COMMAND GROUP USER ENV: a devstack@NAME.service unit
    # (KillMode=process: stopping sends SIGTERM, the server finishes
    # in-flight requests and exits; ExecReload=kill -HUP $MAINPID:
    # `systemctl reload` re-reads the policy file and the log levels).
    # Logs: journalctl -u devstack@NAME.
    local env=""
    if [[ -n "$ZAQAR_LOG_LEVEL" ]]; then
        env="RUST_LOG=$ZAQAR_LOG_LEVEL"
    fi
    run_process "$(zaqar_process_name)" \
        "$ZAQAR_BIN_DIR/zaqar-server --config-file $ZAQAR_CONF" \
        "" "" "$env"
    if is_service_enabled zaqar-wsgi && is_service_enabled tls-proxy; then
        start_tls_proxy zaqar '*' "$ZAQAR_SERVICE_PORT" "$ZAQAR_SERVICE_HOST" "$ZAQAR_SERVICE_PORT_INT"
    fi
    if is_service_enabled zaqar-wsgi; then
        wait_for_zaqar_ping
    fi
}

# wait_for_zaqar_ping - GET /v2/ping until it answers 204.
function wait_for_zaqar_ping {
    local url="$ZAQAR_SERVICE_PROTOCOL://$ZAQAR_SERVICE_HOST:$ZAQAR_SERVICE_PORT/v2/ping"
    local tls=()
    if [[ "$ZAQAR_SERVICE_PROTOCOL" == "https" && -f "$SSL_BUNDLE_FILE" ]]; then
        tls=(--cacert "$SSL_BUNDLE_FILE")
    fi
    local client_id project token
    client_id=$(uuidgen 2>/dev/null || python3 -c 'import uuid; print(uuid.uuid4())')
    project=devstack-probe
    local auth=()
    if is_service_enabled keystone; then
        token=$(openstack --os-cloud devstack-admin token issue -f value -c id)
        project=$(openstack --os-cloud devstack-admin token issue -f value -c project_id)
        auth=(-H "X-Auth-Token: $token")
    fi
    echo "Waiting for $url to answer 204"
    local deadline=$((SECONDS + ZAQAR_START_TIMEOUT)) code=""
    while (( SECONDS < deadline )); do
        code=$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' \
            "${tls[@]}" -H "Client-ID: $client_id" -H "X-Project-ID: $project" "${auth[@]}" "$url" || true)
        if [[ "$code" == "204" ]]; then
            echo "zaqar-server is up"
            return 0
        fi
        sleep 1
    done
    die $LINENO "zaqar-server did not answer GET /v2/ping with 204 within ${ZAQAR_START_TIMEOUT}s (last status: ${code:-none}); see: journalctl -u devstack@$(zaqar_process_name)"
}

# stop_zaqar - stops the unit (SIGTERM: in-flight requests finish).
function stop_zaqar {
    stop_process zaqar-wsgi
    stop_process zaqar-websocket
}

# cleanup_zaqar - removes what stack left: configuration, data, the binary.
function cleanup_zaqar {
    sudo rm -rf "$ZAQAR_CONF_DIR" "$ZAQAR_DATA_DIR"
    sudo rm -f "$ZAQAR_BIN_DIR/zaqar-server"
}

# configure_tempest_for_zaqar - tempest's [service_available] zaqar.
function configure_tempest_for_zaqar {
    if is_service_enabled tempest; then
        iniset "$TEMPEST_CONFIG" service_available zaqar True
    fi
}

if is_service_enabled zaqar-wsgi || is_service_enabled zaqar-websocket; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing Zaqar (Rust)"
        install_zaqar
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring Zaqar (Rust)"
        configure_zaqar
        if is_service_enabled keystone; then
            create_zaqar_accounts
        fi
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting Zaqar (Rust)"
        start_zaqar
    elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
        if is_service_enabled tempest && [[ "$ZAQAR_INSTALL_TEMPEST_PLUGIN" == "True" ]]; then
            install_zaqar_tempest_plugin
        fi
        configure_tempest_for_zaqar
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_zaqar
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_zaqar
    fi
fi

# Restore xtrace
$_XTRACE_ZAQAR

# Local variables:
# mode: shell-script
# End:
