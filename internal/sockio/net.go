package sockio

import (
	"context"
	"net"
	"strings"
)

// Listener wraps the connections l accepts.
func Listener(l net.Listener) net.Listener { return listener{l} }

type listener struct{ net.Listener }

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}

// DialContext connects to addr, a host:port over TCP or, as grpc's own
// dialer does for unix: targets, an absolute or abstract (@) socket path,
// and wraps the connection. It fits grpc.WithContextDialer.
func DialContext(ctx context.Context, addr string) (net.Conn, error) {
	network := "tcp"
	if strings.HasPrefix(addr, "/") || strings.HasPrefix(addr, "@") {
		network = "unix"
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return Wrap(c), nil
}
