#!/usr/bin/env bash
# The sourced files are devstack's (not in this repository), and the
# variables set here are devstack's globals, read by its functions.
# shellcheck disable=SC1091,SC2034
#
# A cut-down stack.sh / unstack.sh / clean.sh for tests/devstack/run.sh: runs
# the phases of the devstack plugins enabled in $TOP_DIR/local.conf (ours)
# with devstack's own functions, in the order devstack runs them.
#
#   phases.sh stack     stack.sh:   source, stack install, post-config, extra,
#                                   test-config (with what stack.sh does
#                                   between them that the plugin relies on:
#                                   the global venv, python-openstackclient,
#                                   clouds.yaml)
#   phases.sh unstack   unstack.sh: source, unstack
#   phases.sh clean     clean.sh:   source, clean
#
# What is not devstack's own, and why (everything else is devstack's code):
# - stack.sh/unstack.sh/clean.sh themselves are not run: they install the
#   distribution's packages, MySQL, RabbitMQ, Keystone..., write to /etc and
#   refuse to run as root. This script runs only the steps of theirs listed
#   above.
# - The plugins' phases run through devstack's run_plugins, i.e. run_phase
#   without the in-tree extras.d/80-tempest.sh (tempest's own installation
#   from git with tox is not part of this test; run_phase source still
#   sources it, which loads lib/tempest).
# - Paths devstack hard-codes outside its variables point into the test's
#   work directory: SYSTEMD_DIR (/etc/systemd/system), OPENSTACKCLIENT_CONF_DIR
#   (/etc/openstack), and the Keystone URLs (lib/keystone puts Keystone under
#   /identity behind Apache; the test's Keystone serves at the root of its
#   port).
# - `sudo` and `systemctl` are the test doubles in tests/devstack/bin (first on
#   PATH, set by run.sh).
#
# Environment (set by run.sh): TOP_DIR (the devstack checkout, with our
# local.conf), ZAQAR_DEVSTACK_SYSTEMD_DIR, ZAQAR_DEVSTACK_CLIENT_CONF_DIR,
# ZAQAR_DEVSTACK_KEYSTONE_URI.
# As stack.sh: errexit (here in every mode: a failing command of the plugin's
# unstack or clean is a bug too), no pipefail (devstack's functions rely on
# that, e.g. `git show | head -1`), xtrace into the log.
set -o errexit
set -o xtrace

MODE=${1:?usage: phases.sh stack|unstack|clean}
TOP_DIR=${TOP_DIR:?TOP_DIR (the devstack checkout) is not set}
FILES=$TOP_DIR/files

# As stack.sh begins: devstack's functions, the distribution, the localrc
# section of local.conf, stackrc.
source "$TOP_DIR/functions"
source "$TOP_DIR/lib/stack"
GetDistro
rm -f "$TOP_DIR/.localrc.auto"
extract_localrc_section "$TOP_DIR/local.conf" "$TOP_DIR/localrc" "$TOP_DIR/.localrc.auto"
source "$TOP_DIR/stackrc"

# stack.sh's install_python, less its apt-get (python3 is there).
export PYTHON
PYTHON=$(which "python${PYTHON3_VERSION}")

SYSTEMD_DIR=$ZAQAR_DEVSTACK_SYSTEMD_DIR
OPENSTACKCLIENT_CONF_DIR=$ZAQAR_DEVSTACK_CLIENT_CONF_DIR
# The clients look for clouds.yaml in /etc/openstack (and ~/.config): here.
export OS_CLIENT_CONFIG_FILE=$OPENSTACKCLIENT_CONF_DIR/clouds.yaml
SSL_BUNDLE_FILE="$DATA_DIR/ca-bundle.pem"

fetch_plugins
run_phase override_defaults
source "$TOP_DIR/lib/apache"
source "$TOP_DIR/lib/tls"
source "$TOP_DIR/lib/keystone"

KEYSTONE_SERVICE_URI=$ZAQAR_DEVSTACK_KEYSTONE_URI
KEYSTONE_AUTH_URI=$KEYSTONE_SERVICE_URI
KEYSTONE_AUTH_URI_V3=$KEYSTONE_SERVICE_URI/v3
KEYSTONE_SERVICE_URI_V3=$KEYSTONE_SERVICE_URI/v3

run_phase source

case "$MODE" in
    stack)
        # stack.sh: the global venv (setup_devstack_virtualenv), the plugins'
        # install phase, python-openstackclient, clouds.yaml.
        setup_devstack_virtualenv
        echo_summary "phase: stack install"
        run_plugins stack install
        pip_install_gr python-openstackclient
        write_clouds_yaml
        export OS_CLOUD=${OS_CLOUD:-devstack-admin}
        echo_summary "phase: stack post-config"
        run_plugins stack post-config
        echo_summary "phase: stack extra"
        run_plugins stack extra
        echo_summary "phase: stack test-config"
        run_plugins stack test-config
        ;;
    unstack)
        setup_devstack_virtualenv
        echo_summary "phase: unstack"
        run_phase unstack
        ;;
    clean)
        setup_devstack_virtualenv
        echo_summary "phase: clean"
        run_phase clean
        # clean.sh: the unit files go too.
        sudo find "$SYSTEMD_DIR" -type f -name '*devstack@*service' -delete
        ;;
    *)
        die $LINENO "unknown mode $MODE (stack, unstack or clean)"
        ;;
esac
echo "phases.sh $MODE: done"
