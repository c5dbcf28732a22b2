//go:build linux

package sockio

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestListenerAndDial(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "s")
			}
			raw, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			ln := Listener(raw)
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					t.Error(err)
				}
				accepted <- c
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := DialContext(ctx, raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s := <-accepted
			if s == nil {
				t.FailNow()
			}
			defer s.Close()
			_, isTCP := TCP(c)
			_, wrapped := c.(*Conn)
			if runtime.GOOS == "linux" && wrapped != (network == "tcp") || isTCP != (network == "tcp") {
				t.Fatalf("dialled %T over %s", c, network)
			}
			if _, err := c.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 2)
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hi" {
				t.Fatalf("read %q, %v", buf, err)
			}
		})
	}
	t.Run("closed listener", func(t *testing.T) {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln := Listener(raw)
		ln.Close()
		if c, err := ln.Accept(); c != nil || err == nil {
			t.Fatalf("Accept on a closed listener = %v, %v", c, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		raw, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := raw.Addr().String()
		raw.Close()
		if c, err := DialContext(context.Background(), addr); c != nil || err == nil {
			t.Fatalf("DialContext to a closed port = %v, %v", c, err)
		}
	})
}
