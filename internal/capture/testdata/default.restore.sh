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
iptables-restore --noflush <<'EOF'
*nat
:REMORA_REDIRECT - [0:0]
:REMORA_IN_REDIRECT - [0:0]
:REMORA_INBOUND - [0:0]
:REMORA_OUTPUT - [0:0]
-A REMORA_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A REMORA_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A REMORA_INBOUND -p tcp --dport 15000 -j RETURN
-A REMORA_INBOUND -p tcp --dport 15020 -j RETURN
-A REMORA_INBOUND -p tcp --dport 15021 -j RETURN
-A REMORA_INBOUND -p tcp --dport 15090 -j RETURN
-A REMORA_INBOUND -p tcp -j REMORA_IN_REDIRECT
-A PREROUTING -p tcp -j REMORA_INBOUND
-A REMORA_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN
-A REMORA_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1337 -j REMORA_IN_REDIRECT
-A REMORA_OUTPUT -o lo -m owner ! --uid-owner 1337 -j RETURN
-A REMORA_OUTPUT -m owner --uid-owner 1337 -j RETURN
-A REMORA_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner 1337 -j REMORA_IN_REDIRECT
-A REMORA_OUTPUT -o lo -m owner ! --gid-owner 1337 -j RETURN
-A REMORA_OUTPUT -m owner --gid-owner 1337 -j RETURN
-A REMORA_OUTPUT -d 127.0.0.1/32 -j RETURN
-A REMORA_OUTPUT -j REMORA_REDIRECT
-A OUTPUT -p tcp -j REMORA_OUTPUT
COMMIT
EOF
