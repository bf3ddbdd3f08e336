# Runs inside the VM of tests/tests/offload_vm.rs (Debian's kernel, the
# host's root read-only with a tmpfs overlay). The test prepends BIN (the
# daemon), BPF (its eBPF object) and MAC (the device's MAC) to this text.
#
# A tiny home: `dev` (192.0.2.10) ─ p0 ┐ br-lan (192.0.2.1) in `gw`, whose
# `wan0` (198.51.100.1) links to `srv` (198.51.100.2; the server is
# 203.0.113.10). gw has an fw4-shaped firewall with a software flowtable on
# br-lan and wan0, so established TCP leaves the forward path.
#
# Raw measurements go to $IIL_OUT (files) and $IIL_OUT/results (key=value);
# the Rust test decides pass or fail.
set -u
O=$IIL_OUT
R=$O/results
W=/tmp/iil-offload
mkdir -p "$W"
say() { echo "$1=$2" >> "$R"; echo "$1=$2"; }
ms() { echo $(( $(date +%s%N) / 1000000 )); }
fail() { say error "$*"; exit 1; }
in_ns() { ns=$1; shift; ip netns exec "$ns" "$@"; }
# IP-layer bytes of a named counter in table inet reference of a namespace.
counter() { in_ns "$1" nft -j list counter inet reference "$2" | sed -n 's/.*"bytes": *\([0-9]*\).*/\1/p'; }
rx_bytes() { ip -n srv -s -j link show dev eth0 | sed -n 's/.*"rx": *{ *"bytes": *\([0-9]*\).*/\1/p'; }
offloaded() { in_ns gw conntrack -L -p tcp --dport "$1" 2>/dev/null | grep -c OFFLOAD; }

say kernel "$(uname -r)"
for m in veth bridge nf_conntrack nf_conntrack_netlink nf_tables nf_flow_table \
    nf_flow_table_inet nft_flow_offload nft_ct nft_nat nft_masq nft_chain_nat \
    nf_reject_ipv4 nf_reject_ipv6 nft_reject nft_reject_inet sch_ingress cls_bpf; do
    modprobe "$m" || fail "modprobe $m"
done
# Named counters need nft_objref: a module of its own before 6.2, part of
# nf_tables since (a missing one fails the ruleset below, clearly).
modprobe nft_objref 2>/dev/null || true

for n in dev gw srv; do ip netns add $n; ip -n $n link set lo up; done
ip -n gw link add br-lan type bridge
ip -n gw link add p0 type veth peer name eth0 netns dev
ip -n dev link set eth0 address "$MAC"
ip -n gw link set p0 master br-lan
ip -n gw link add wan0 type veth peer name eth0 netns srv
# MTU-sized frames on every link, as a wire carries (no GSO/GRO super-packets).
for x in "dev eth0" "gw p0" "gw wan0" "srv eth0"; do
    set -- $x
    for f in tso gso gro; do in_ns "$1" ethtool -K "$2" $f off 2>/dev/null; done
    ip -n "$1" link set "$2" up
done
ip -n gw link set br-lan up
ip -n dev addr add 192.0.2.10/24 dev eth0
ip -n dev route add default via 192.0.2.1
ip -n gw addr add 192.0.2.1/24 dev br-lan
ip -n gw addr add 198.51.100.1/24 dev wan0
ip -n gw route add 203.0.113.0/24 via 198.51.100.2
in_ns gw sysctl -qw net.ipv4.ip_forward=1
ip -n srv addr add 198.51.100.2/24 dev eth0
ip -n srv addr add 203.0.113.10/32 dev lo
ip -n srv route add 192.0.2.0/24 via 198.51.100.1

# fw4's shape with software offload on: the flowtable lists the netdevs
# that forward (the bridge itself, as OpenWrt does, and the wan side).
in_ns gw nft -f - <<'EOF' || fail "fw4 ruleset"
table inet fw4 {
    flowtable ft {
        hook ingress priority 0;
        devices = { br-lan, wan0 };
    }
    counter fwd_up { }
    chain forward {
        type filter hook forward priority filter; policy drop;
        tcp dport { 5201, 5202, 5203 } counter name "fwd_up"
        meta l4proto { tcp, udp } flow add @ft
        ct state established,related accept
        iifname "br-lan" oifname "wan0" accept
    }
    chain srcnat {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan0" masquerade
    }
}
EOF
# Receiver-side references: what the server got from the (masqueraded)
# device, and what the device got back, at the IP layer.
in_ns srv nft -f - <<'EOF' || fail "server meter"
table inet reference {
    counter up5201 { }
    counter up5202 { }
    counter up5203 { }
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr 198.51.100.1 tcp dport 5201 counter name "up5201"
        ip saddr 198.51.100.1 tcp dport 5202 counter name "up5202"
        ip saddr 198.51.100.1 tcp dport 5203 counter name "up5203"
    }
}
EOF
in_ns dev nft -f - <<'EOF' || fail "device meter"
table inet reference {
    counter down5201 { }
    chain input {
        type filter hook input priority 0; policy accept;
        ip saddr 203.0.113.10 tcp sport 5201 counter name "down5201"
    }
}
EOF
in_ns dev ping -c 1 -W 2 203.0.113.10 > /dev/null || fail "no route from dev to the server"

# The real daemon on br-lan (it attaches to the bridge's ports).
mkdir -p "$W/bpffs"
mount -t bpf bpf "$W/bpffs"
printf "config iot-inspector 'main'\n\tlist lan 'br-lan'\n" > "$W/config"
S=$W/api.sock
RUST_LOG=info in_ns gw "$BIN" --socket "$S" run --lan br-lan --config "$W/config" \
    --bpf-object "$BPF" --database "$W/db.redb" --pin-dir "$W/bpffs/iot-inspector" \
    --window 1 > "$O/daemon.log" 2>&1 &
DAEMON=$!
status() { curl -fsS --max-time 5 --unix-socket "$S" http://localhost/v1/status 2>/dev/null; }
t=$(ms)
until status | grep -q '"ports": *\[ *[^] ]'; do
    [ $(( $(ms) - t )) -gt 60000 ] && fail "the daemon did not come up"
    kill -0 $DAEMON 2>/dev/null || { wait $DAEMON; say daemon_exit $?; fail "the daemon exited"; }
    sleep 0.2
done
say daemon_ready_ms $(( $(ms) - t ))
status > "$O/status_start.json"
# How the programs were attached to the port: cls_bpf filters over netlink
# (before 6.6; the daemon's priority is 0x4001 = 16385) or TCX links,
# which the daemon pins in a links/ directory under its pin dir.
for d in ingress egress; do
    echo "== $d" >> "$O/tc_filters_p0.txt"
    in_ns gw tc filter show dev p0 $d >> "$O/tc_filters_p0.txt" 2>&1
done
say cls_bpf_filters "$(grep -c 'pref 16385 bpf .*handle 0x1a07' "$O/tc_filters_p0.txt")"
find "$W/bpffs/iot-inspector" -path '*/links/*' > "$O/tcx_links.txt" 2>&1
say tcx_links "$(grep -c '/links/p0-' "$O/tcx_links.txt")"

for p in 5201 5202 5203; do
    in_ns srv iperf3 -s -1 -B 203.0.113.10 -p $p > /dev/null 2>&1 &
done
sleep 0.5

# (a) An offloaded upload is still counted.
in_ns dev iperf3 -c 203.0.113.10 -p 5201 -t 6 -b 40M --connect-timeout 3000 > "$O/iperf_a.txt" 2>&1 &
A=$!
sleep 3
in_ns gw conntrack -L -p tcp --dport 5201 > "$O/conntrack_a.txt" 2>&1
wait $A; say iperf_a_status $?
sleep 0.5
end=$(date +%s)
t=$(ms)
until [ "$(status | sed -n 's/.*"last_window_end": *\([0-9]*\).*/\1/p')" -gt "$end" ] 2>/dev/null; do
    [ $(( $(ms) - t )) -gt 15000 ] && fail "no window stored after the transfer"
    sleep 0.2
done
sleep 1.2
"$BIN" --socket "$S" flows --device "$MAC" --since 20m --json > "$O/flows_a.json"
"$BIN" --socket "$S" devices --json > "$O/devices.json"
say server_up_bytes "$(counter srv up5201)"
say device_down_bytes "$(counter dev down5201)"
in_ns gw nft -j list counter inet fw4 fwd_up > "$O/fwd_a.json"

# (b) A block cuts an offloaded transfer; an unblock lets new ones through.
in_ns dev iperf3 -c 203.0.113.10 -p 5202 -t 60 -b 8M --connect-timeout 3000 > "$O/iperf_b.txt" 2>&1 &
B=$!
t=$(ms)
until [ "$(offloaded 5202)" -gt 0 ] && [ "$(counter srv up5202)" -gt 500000 ]; do
    [ $(( $(ms) - t )) -gt 15000 ] && fail "the second transfer was not offloaded"
    sleep 0.2
done
in_ns gw conntrack -L -p tcp --dport 5202 > "$O/conntrack_b_before.txt" 2>&1
in_ns gw nft -j list counter inet fw4 fwd_up > "$O/fwd_b_before.json"
say block_bytes_before "$(counter srv up5202)"
t0=$(ms)
# Sampled while the block command runs: `ip -n` reads the server link's
# receive counter without entering the namespace, cheap enough to sample
# often even under emulation.
(
    while [ $(( $(ms) - t0 )) -lt 5000 ]; do
        echo "$(( $(ms) - t0 )) $(rx_bytes)" >> "$O/samples_b.txt"
        sleep 0.05
    done
) &
SAMPLER=$!
"$BIN" --socket "$S" block "$MAC" > "$O/block.txt" 2>&1; say block_status $?
say block_cmd_ms $(( $(ms) - t0 ))
wait $SAMPLER
in_ns gw conntrack -L -p tcp --dport 5202 > "$O/conntrack_b_after.txt" 2>&1
say offloaded_after_block "$(offloaded 5202)"
in_ns gw nft list table inet iot_inspector > "$O/iot_inspector_table.txt" 2>&1
kill $B 2>/dev/null

t1=$(ms)
"$BIN" --socket "$S" unblock "$MAC" > "$O/unblock.txt" 2>&1; say unblock_status $?
ok=1
until in_ns dev iperf3 -c 203.0.113.10 -p 5203 -t 2 -b 20M --connect-timeout 1000 > "$O/iperf_c.txt" 2>&1; do
    [ $(( $(ms) - t1 )) -gt 10000 ] && { ok=0; break; }
    sleep 0.2
done
say unblock_transfer_ok $ok
say unblock_transfer_ms $(( $(ms) - t1 ))
say server_after_unblock_bytes "$(counter srv up5203)"

kill $DAEMON 2>/dev/null
wait $DAEMON 2>/dev/null
umount "$W/bpffs"
say done 1
