package server

import (
	"errors"
)

// ClientHello is what tls_inspector learns from a TLS ClientHello.
type ClientHello struct {
	ServerName string
	ALPN       []string
}

// Errors from ParseClientHello.
var (
	// errNeedMore means the bytes so far are a valid prefix of a
	// ClientHello: read more and parse again.
	errNeedMore = errors.New("tls_inspector: incomplete client hello")
	// errNotTLS means the connection does not start with a TLS handshake.
	errNotTLS = errors.New("tls_inspector: not a tls client hello")
)

// maxClientHello bounds how much tls_inspector reads (Envoy's 64 KiB).
const maxClientHello = 64 << 10

// ParseClientHello parses a ClientHello from the start of a connection,
// possibly spread over several TLS records. It never panics on bad input:
// it returns errNeedMore for a valid but incomplete prefix, errNotTLS when
// the bytes are not a TLS handshake, or another error for a malformed one.
func ParseClientHello(b []byte) (*ClientHello, error) {
	// Reassemble the handshake message from records.
	var msg []byte
	for len(b) > 0 {
		if len(b) < 5 {
			return nil, errNeedMore
		}
		if b[0] != 22 {
			return nil, errNotTLS
		}
		if b[1] != 3 {
			return nil, errNotTLS
		}
		n := int(b[3])<<8 | int(b[4])
		if n == 0 || n > 1<<14+2048 {
			return nil, errors.New("tls_inspector: invalid record length")
		}
		if len(b) < 5+n {
			msg = append(msg, b[5:]...)
			if hs, err := handshakeComplete(msg); err != nil || !hs {
				if err != nil {
					return nil, err
				}
				return nil, errNeedMore
			}
			break
		}
		msg = append(msg, b[5:5+n]...)
		b = b[5+n:]
		if done, err := handshakeComplete(msg); err != nil {
			return nil, err
		} else if done {
			break
		}
	}
	done, err := handshakeComplete(msg)
	if err != nil {
		return nil, err
	}
	if !done {
		return nil, errNeedMore
	}
	return parseHello(msg[4 : 4+handshakeLen(msg)])
}

func handshakeLen(msg []byte) int { return int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]) }

func handshakeComplete(msg []byte) (bool, error) {
	if len(msg) < 4 {
		return false, nil
	}
	if msg[0] != 1 {
		return false, errors.New("tls_inspector: first handshake message is not a client hello")
	}
	n := handshakeLen(msg)
	if n > maxClientHello {
		return false, errors.New("tls_inspector: client hello too large")
	}
	return len(msg) >= 4+n, nil
}

// reader is a bounds-checked cursor.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) u8() int {
	if len(r.b) < 1 {
		r.bad = true
		return 0
	}
	v := int(r.b[0])
	r.b = r.b[1:]
	return v
}

func (r *reader) u16() int {
	if len(r.b) < 2 {
		r.bad = true
		return 0
	}
	v := int(r.b[0])<<8 | int(r.b[1])
	r.b = r.b[2:]
	return v
}

func (r *reader) bytes(n int) []byte {
	if n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

var errMalformed = errors.New("tls_inspector: malformed client hello")

func parseHello(body []byte) (*ClientHello, error) {
	r := &reader{b: body}
	r.bytes(2)       // legacy_version
	r.bytes(32)      // random
	r.bytes(r.u8())  // session id
	r.bytes(r.u16()) // cipher suites
	r.bytes(r.u8())  // compression methods
	if r.bad {
		return nil, errMalformed
	}
	ch := &ClientHello{}
	if len(r.b) == 0 {
		return ch, nil // no extensions
	}
	exts := &reader{b: r.bytes(r.u16())}
	if r.bad {
		return nil, errMalformed
	}
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.bytes(exts.u16())
		if exts.bad {
			return nil, errMalformed
		}
		switch typ {
		case 0: // server_name
			e := &reader{b: data}
			list := &reader{b: e.bytes(e.u16())}
			for len(list.b) > 0 && !list.bad {
				nt := list.u8()
				name := list.bytes(list.u16())
				if nt == 0 && ch.ServerName == "" && !list.bad {
					ch.ServerName = string(name)
				}
			}
			if e.bad || list.bad {
				return nil, errMalformed
			}
		case 16: // application_layer_protocol_negotiation
			e := &reader{b: data}
			list := &reader{b: e.bytes(e.u16())}
			for len(list.b) > 0 && !list.bad {
				p := list.bytes(list.u8())
				if !list.bad && len(p) > 0 {
					ch.ALPN = append(ch.ALPN, string(p))
				}
			}
			if e.bad || list.bad {
				return nil, errMalformed
			}
		}
	}
	return ch, nil
}
