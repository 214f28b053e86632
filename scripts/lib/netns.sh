# shellcheck shell=bash
# scripts/lib/netns.sh: network namespaces for scripts/cluster.sh (sourced, not run).
#
# Every namespace is created through netns_add and remembered; netns_cleanup (trap EXIT)
# deletes them newest first, which removes their veths and addresses with them. Veth pairs
# are created inside the namespaces directly (`ip -n A link add ... peer ... netns B`), so no
# interface ever appears in the machine's own namespace, and interface names are per
# namespace (short fixed names cannot clash with anyone's). Sysctls set here are the
# namespace's own (net.ipv4.ip_forward and conf.* are per namespace): nothing machine-wide
# is changed.

NETNS_CREATED=()

# Can this machine create network namespaces (root, the ip tool, kernel support)? Prints
# the reason on stdout and returns 1 when not.
netns_probe() {
    local probe=rwprobe-$$
    if [[ $(id -u) != 0 ]]; then
        echo "not root (network namespaces need CAP_SYS_ADMIN)"
        return 1
    fi
    if ! command -v ip >/dev/null 2>&1; then
        echo "the ip tool (iproute2) is missing"
        return 1
    fi
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "ip netns add failed (no network namespace support here)"
        return 1
    fi
    if ! ip -n "$probe" link add name va type veth peer name vb 2>/dev/null; then
        ip netns del "$probe" 2>/dev/null || true
        echo "veth pairs cannot be created (no veth support)"
        return 1
    fi
    ip netns del "$probe"
    return 0
}

# Create namespace $1 with its loopback up.
netns_add() {
    ip netns add "$1"
    NETNS_CREATED+=("$1")
    ip -n "$1" link set lo up
}

# Delete every namespace we created, newest first. The processes inside must be gone
# already (a namespace with a live process outlives `ip netns del`'s name).
netns_cleanup() {
    local i
    for ((i = ${#NETNS_CREATED[@]} - 1; i >= 0; i--)); do
        ip netns del "${NETNS_CREATED[i]}" 2>/dev/null || true
    done
    NETNS_CREATED=()
}

# A veth pair: interface $2 in namespace $1, its peer $4 in namespace $3; both up.
netns_veth() {
    ip -n "$1" link add name "$2" type veth peer name "$4" netns "$3"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}

# Run a command inside namespace $1, in the foreground. (A background one is started with
# `ip netns exec NS CMD &` itself, so that $! is the command's own pid: ip execs it.)
nsx() {
    local ns=$1
    shift
    ip netns exec "$ns" "$@"
}

# Has this kernel IPVS (loaded or built in)? /proc/net/ip_vs or /sys/module/ip_vs exists then.
ipvs_in_kernel() {
    [[ -e /proc/net/ip_vs || -d /sys/module/ip_vs ]]
}
