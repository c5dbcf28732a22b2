iptables -t nat -D PREROUTING -p tcp -j REMORA_INBOUND 2>/dev/null || true
iptables -t nat -D OUTPUT -p tcp -j REMORA_OUTPUT 2>/dev/null || true
iptables -t nat -F REMORA_REDIRECT 2>/dev/null || true
iptables -t nat -F REMORA_IN_REDIRECT 2>/dev/null || true
iptables -t nat -F REMORA_INBOUND 2>/dev/null || true
iptables -t nat -F REMORA_OUTPUT 2>/dev/null || true
iptables -t nat -X REMORA_REDIRECT 2>/dev/null || true
iptables -t nat -X REMORA_IN_REDIRECT 2>/dev/null || true
iptables -t nat -X REMORA_INBOUND 2>/dev/null || true
iptables -t nat -X REMORA_OUTPUT 2>/dev/null || true
ip6tables -t nat -D PREROUTING -p tcp -j REMORA_INBOUND 2>/dev/null || true
ip6tables -t nat -D OUTPUT -p tcp -j REMORA_OUTPUT 2>/dev/null || true
ip6tables -t nat -F REMORA_REDIRECT 2>/dev/null || true
ip6tables -t nat -F REMORA_IN_REDIRECT 2>/dev/null || true
ip6tables -t nat -F REMORA_INBOUND 2>/dev/null || true
ip6tables -t nat -F REMORA_OUTPUT 2>/dev/null || true
ip6tables -t nat -X REMORA_REDIRECT 2>/dev/null || true
ip6tables -t nat -X REMORA_IN_REDIRECT 2>/dev/null || true
ip6tables -t nat -X REMORA_INBOUND 2>/dev/null || true
ip6tables -t nat -X REMORA_OUTPUT 2>/dev/null || true
