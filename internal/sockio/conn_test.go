//go:build linux

package sockio

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection, both closed
// when the test ends.
func pair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c.(*net.TCPConn), r.c.(*net.TCPConn)
}

// flavours runs f on a plain *net.TCPConn and on its Wrap, so that every
// behaviour is checked against the standard library's as the oracle.
func flavours(t *testing.T, f func(t *testing.T, wrap func(net.Conn) net.Conn)) {
	t.Run("net", func(t *testing.T) { f(t, func(c net.Conn) net.Conn { return c }) })
	t.Run("sockio", func(t *testing.T) { f(t, Wrap) })
}

func TestWrap(t *testing.T) {
	c, _ := pair(t)
	w := Wrap(c)
	if runtime.GOOS == "linux" {
		if _, ok := w.(*Conn); !ok {
			t.Fatalf("Wrap(*net.TCPConn) = %T, want *Conn", w)
		}
	}
	if tc, ok := TCP(w); !ok || tc != c {
		t.Fatalf("TCP(Wrap(c)) = %v, %v; want c", tc, ok)
	}
	if tc, ok := TCP(c); !ok || tc != c {
		t.Fatalf("TCP(c) = %v, %v; want c", tc, ok)
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if w := Wrap(p1); w != p1 {
		t.Fatalf("Wrap(pipe) = %T, want the pipe itself", w)
	}
	if _, ok := TCP(p1); ok {
		t.Fatal("TCP(pipe) reported a TCP connection")
	}
}

func TestReadWrite(t *testing.T) {
	flavours(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t)
		wc, ws := wrap(c), wrap(s)
		if n, err := wc.Write(nil); n != 0 || err != nil {
			t.Fatalf("Write(nil) = %d, %v", n, err)
		}
		if n, err := wc.Read(nil); n != 0 || err != nil {
			t.Fatalf("Read(nil) = %d, %v", n, err)
		}
		msg := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if n, err := wc.Write(msg); n != len(msg) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(ws, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("read %q, want %q", got, msg)
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if n, err := wc.Read(got); n != 0 || err != io.EOF {
			t.Fatalf("Read at the peer's FIN = %d, %v; want 0, io.EOF", n, err)
		}
	})
}

// TestLargeWrite writes more than the socket buffers hold while the peer
// reads slowly, so writes return EAGAIN and wait for writability.
func TestLargeWrite(t *testing.T) {
	flavours(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t)
		_ = c.SetWriteBuffer(16 << 10)
		_ = s.SetReadBuffer(16 << 10)
		wc := wrap(c)
		data := make([]byte, 8<<20+123)
		for i := range data {
			data[i] = byte(i*7 + i>>9)
		}
		want := sha256.Sum256(data)
		done := make(chan [32]byte, 1)
		go func() {
			h := sha256.New()
			buf := make([]byte, 3000) // small reads: the writer fills the buffers first
			_, _ = io.CopyBuffer(h, readerOnly{wrap(s)}, buf)
			var sum [32]byte
			copy(sum[:], h.Sum(nil))
			done <- sum
		}()
		n, err := wc.Write(data)
		if n != len(data) || err != nil {
			t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(data))
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got := <-done; got != want {
			t.Fatal("the peer read different bytes")
		}
	})
}

type readerOnly struct{ io.Reader }

// TestErrors checks that errors have the standard library's shape: a
// *net.OpError with Op "read"/"write" that errors.Is the condition.
func TestErrors(t *testing.T) {
	cases := []struct {
		name   string
		op     string
		target error
		run    func(t *testing.T, c net.Conn, raw, peer *net.TCPConn) error
	}{
		{"read deadline", "read", os.ErrDeadlineExceeded, func(t *testing.T, c net.Conn, _, _ *net.TCPConn) error {
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			_, err := c.Read(make([]byte, 10))
			return err
		}},
		{"read after close", "read", net.ErrClosed, func(t *testing.T, c net.Conn, _, _ *net.TCPConn) error {
			c.Close()
			_, err := c.Read(make([]byte, 10))
			return err
		}},
		{"close while reading", "read", net.ErrClosed, func(t *testing.T, c net.Conn, raw, _ *net.TCPConn) error {
			errc := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 10))
				errc <- err
			}()
			// Wait until the reader is parked in the poller: the
			// goroutine's Read cannot return before data or close.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			waitBlocked(ctx, t)
			c.Close()
			return <-errc
		}},
		{"read reset", "read", syscall.ECONNRESET, func(t *testing.T, c net.Conn, _, peer *net.TCPConn) error {
			_ = peer.SetLinger(0)
			if _, err := peer.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			// Unread data at close makes the kernel send RST.
			if _, err := c.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte("unread")); err != nil {
				t.Fatal(err)
			}
			waitUnread(t, peer)
			peer.Close()
			_, err := c.Read(make([]byte, 10))
			return err
		}},
		{"write deadline", "write", os.ErrDeadlineExceeded, func(t *testing.T, c net.Conn, raw, _ *net.TCPConn) error {
			_ = raw.SetWriteBuffer(4 << 10)
			_ = c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := c.Write(make([]byte, 64<<20)) // the peer never reads
			return err
		}},
		{"write after reset", "write", syscall.EPIPE, func(t *testing.T, c net.Conn, _, peer *net.TCPConn) error {
			_ = peer.SetLinger(0)
			peer.Close()
			// The first write may be accepted before the RST arrives;
			// then ECONNRESET, then EPIPE.
			var err error
			for range 100 {
				if _, err = c.Write([]byte("x")); err != nil && errors.Is(err, syscall.EPIPE) {
					break
				}
				if err != nil && !errors.Is(err, syscall.ECONNRESET) {
					break
				}
				_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
				_, _ = c.Read(make([]byte, 1)) // let the RST be processed
			}
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flavours(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
				c, s := pair(t)
				err := tc.run(t, wrap(c), c, s)
				var oe *net.OpError
				if !errors.As(err, &oe) || oe.Op != tc.op {
					t.Fatalf("error %v (%T), want a *net.OpError with Op %q", err, err, tc.op)
				}
				if !errors.Is(err, tc.target) {
					t.Fatalf("error %v is not %v", err, tc.target)
				}
				if oe.Source == nil || oe.Addr == nil {
					t.Fatalf("error %v lacks its addresses", err)
				}
				if errors.Is(tc.target, os.ErrDeadlineExceeded) {
					var ne net.Error
					if !errors.As(err, &ne) || !ne.Timeout() {
						t.Fatalf("error %v is not a net.Error timeout", err)
					}
				}
			})
		})
	}
}

// waitBlocked waits until some goroutine is blocked in the poller (a
// network wait), polling the goroutine dump without sleeping.
func waitBlocked(ctx context.Context, t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for ctx.Err() == nil {
		n := runtime.Stack(buf, true)
		if bytes.Contains(buf[:n], []byte("[IO wait")) {
			return
		}
		runtime.Gosched()
	}
	t.Fatal("no goroutine blocked in the poller")
}

// waitUnread waits until c's receive queue holds data (SIOCINQ), so that
// closing c resets the connection.
func waitUnread(t *testing.T, c *net.TCPConn) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		_ = rc.Control(func(fd uintptr) { n = inq(fd) })
		if n > 0 {
			return
		}
		runtime.Gosched()
	}
	t.Fatal("peer never received the unread bytes")
}

// TestConcurrent reads and writes one connection from several goroutines
// at once (net.Conn allows it); the race detector checks the shared state.
func TestConcurrent(t *testing.T) {
	c, s := pair(t)
	wc, ws := Wrap(c), Wrap(s)
	const writers, each = 4, 200
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				if _, err := wc.Write([]byte("0123456789")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	total := 0
	var rg sync.WaitGroup
	for range 3 {
		rg.Add(1)
		go func() {
			defer rg.Done()
			buf := make([]byte, 7)
			for {
				n, err := ws.Read(buf)
				mu.Lock()
				total += n
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	_ = c.CloseWrite()
	rg.Wait()
	if total != writers*each*10 {
		t.Fatalf("read %d bytes, want %d", total, writers*each*10)
	}
}

// BenchmarkPingPong is one 1 KiB request and response per iteration over
// loopback, the shape of a proxied keep-alive exchange.
func BenchmarkPingPong(b *testing.B) {
	for _, bc := range []struct {
		name        string
		wrap        func(net.Conn) net.Conn
		writeOnRead bool
	}{{"net", func(c net.Conn) net.Conn { return c }, false}, {"sockio", Wrap, false}, {"sockio-WriteOnRead", Wrap, true}} {
		b.Run(bc.name, func(b *testing.B) {
			c, s := pair(b)
			wc, ws := bc.wrap(c), bc.wrap(s)
			go func() {
				buf := make([]byte, 1024)
				for {
					if _, err := io.ReadFull(ws, buf); err != nil {
						return
					}
					if _, err := ws.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 1024)
			b.ReportAllocs()
			b.SetBytes(2048)
			for b.Loop() {
				if bc.writeOnRead {
					wc.(*Conn).WriteOnRead(buf)
				} else if _, err := wc.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(wc, buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestWriteOnRead: the bytes go out with the next Read (or ahead of the
// next Write), however large, and errors say which direction failed.
func TestWriteOnRead(t *testing.T) {
	ask := func(t *testing.T, c *Conn, q []byte) {
		t.Helper()
		c.WriteOnRead(q)
	}
	// answer reads n bytes, hands them over and answers "ok".
	answer := func(s net.Conn, n int) <-chan []byte {
		got := make(chan []byte, 1)
		go func() {
			// Small reads: one as large as the whole request makes the
			// kernel's tiny test windows crawl.
			var b bytes.Buffer
			if _, err := io.CopyBuffer(&b, readerOnly{io.LimitReader(s, int64(n))}, make([]byte, 3000)); err != nil || b.Len() != n {
				got <- nil
				return
			}
			got <- b.Bytes()
			s.Write([]byte("ok"))
		}()
		return got
	}
	t.Run("request and response", func(t *testing.T) {
		c, s := pair(t)
		wc := Wrap(c).(*Conn)
		for i := range 3 {
			q := []byte(fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i))
			got := answer(s, len(q))
			ask(t, wc, q)
			q[0] = 'X' // WriteOnRead copied it
			buf := make([]byte, 2)
			if _, err := io.ReadFull(wc, buf); err != nil || string(buf) != "ok" {
				t.Fatalf("read %q, %v", buf, err)
			}
			if b := <-got; string(b) != fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i) {
				t.Fatalf("peer read %q", b)
			}
		}
	})
	t.Run("larger than the socket buffers", func(t *testing.T) {
		c, s := pair(t)
		_ = c.SetWriteBuffer(16 << 10)
		_ = s.SetReadBuffer(16 << 10)
		wc := Wrap(c).(*Conn)
		q := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		got := answer(s, len(q))
		ask(t, wc, q)
		buf := make([]byte, 2)
		if _, err := io.ReadFull(wc, buf); err != nil || string(buf) != "ok" {
			t.Fatalf("read %q, %v", buf, err)
		}
		if b := <-got; !bytes.Equal(b, q) {
			t.Fatal("the peer read different bytes")
		}
	})
	t.Run("ahead of a write", func(t *testing.T) {
		c, s := pair(t)
		wc := Wrap(c).(*Conn)
		ask(t, wc, []byte("first "))
		if _, err := wc.Write([]byte("second")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len("first second"))
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "first second" {
			t.Fatalf("peer read %q, %v", buf, err)
		}
	})
	t.Run("dropped by close", func(t *testing.T) {
		c, s := pair(t)
		wc := Wrap(c).(*Conn)
		ask(t, wc, []byte("never sent"))
		wc.Close()
		if b, err := io.ReadAll(s); len(b) != 0 || err != nil {
			t.Fatalf("peer read %q, %v; want nothing, then EOF", b, err)
		}
	})
	t.Run("read deadline after the write", func(t *testing.T) {
		c, s := pair(t)
		wc := Wrap(c).(*Conn)
		ask(t, wc, []byte("ping"))
		_ = wc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := wc.Read(make([]byte, 4))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v, want a read deadline error", err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("peer read %q, %v; the write must have gone out", buf, err)
		}
	})
	t.Run("closed connection", func(t *testing.T) {
		c, _ := pair(t)
		wc := Wrap(c).(*Conn)
		wc.Close()
		ask(t, wc, []byte("x"))
		_, err := wc.Read(make([]byte, 1))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read = %v, want a write error on a closed connection", err)
		}
	})
	t.Run("reset peer", func(t *testing.T) {
		c, s := pair(t)
		wc := Wrap(c).(*Conn)
		_ = s.SetLinger(0)
		s.Close()
		// Let the reset arrive: a read sees it.
		if _, err := wc.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("read after the peer's reset: %v", err)
		}
		ask(t, wc, []byte("x"))
		_, err := wc.Read(make([]byte, 1))
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" || !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("Read = %v, want the write's EPIPE", err)
		}
	})
}

// passed waits, without sleeping, until t is in the past.
func passed(t time.Time) {
	for time.Now().Before(t.Add(time.Millisecond)) {
		runtime.Gosched()
	}
}

// TestReadDeadlineMoves checks deadlines that move after they were set:
// a Read obeys the last deadline asked for, whatever the poller held
// before (Conn hands later and cleared deadlines over lazily).
func TestReadDeadlineMoves(t *testing.T) {
	cases := []struct {
		name string
		// set moves the deadline; it returns when the Read may start.
		set     func(c net.Conn) time.Time
		timeout bool // the Read times out (otherwise it reads the peer's byte)
	}{
		{"later deadline", func(c net.Conn) time.Time {
			early := time.Now().Add(time.Millisecond)
			_ = c.SetReadDeadline(early)
			_ = c.SetReadDeadline(time.Now().Add(time.Hour))
			return early
		}, false},
		{"cleared deadline", func(c net.Conn) time.Time {
			early := time.Now().Add(time.Millisecond)
			_ = c.SetReadDeadline(early)
			_ = c.SetReadDeadline(time.Time{})
			return early
		}, false},
		{"cleared after an abort", func(c net.Conn) time.Time {
			_ = c.SetReadDeadline(time.Unix(1, 0))
			_ = c.SetReadDeadline(time.Time{})
			return time.Now()
		}, false},
		{"earlier deadline", func(c net.Conn) time.Time {
			_ = c.SetReadDeadline(time.Now().Add(time.Hour))
			early := time.Now().Add(time.Millisecond)
			_ = c.SetReadDeadline(early)
			return early
		}, true},
		{"deadline passed", func(c net.Conn) time.Time {
			_ = c.SetReadDeadline(time.Time{})
			early := time.Now().Add(time.Millisecond)
			_ = c.SetReadDeadline(early)
			return early
		}, true},
		{"later then earlier than the first", func(c net.Conn) time.Time {
			_ = c.SetReadDeadline(time.Now().Add(time.Hour))
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Hour))
			early := time.Now().Add(time.Millisecond)
			_ = c.SetReadDeadline(early)
			return early
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			flavours(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
				c, s := pair(t)
				w := wrap(c)
				passed(tc.set(w))
				if !tc.timeout {
					if _, err := s.Write([]byte("x")); err != nil {
						t.Fatal(err)
					}
				}
				b := make([]byte, 1)
				n, err := w.Read(b)
				if tc.timeout {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						t.Fatalf("Read = %d, %v; want a deadline error", n, err)
					}
					return
				}
				if err != nil || string(b[:n]) != "x" {
					t.Fatalf("Read = %q, %v; want the peer's byte", b[:n], err)
				}
			})
		})
	}
}

// TestReadDeadlineAbortsWaitingRead is the abort a server uses to stop a
// pending read: a past deadline set while Read waits under a later one.
func TestReadDeadlineAbortsWaitingRead(t *testing.T) {
	flavours(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t)
		w := wrap(c)
		_ = w.SetReadDeadline(time.Now().Add(time.Hour))
		_ = w.SetReadDeadline(time.Now().Add(2 * time.Hour))
		errc := make(chan error, 1)
		go func() {
			_, err := w.Read(make([]byte, 1))
			errc <- err
		}()
		// The abort may come before or after the Read starts waiting:
		// either way the Read ends with a deadline error.
		_ = w.SetReadDeadline(time.Unix(1, 0))
		if err := <-errc; !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %v, want a deadline error", err)
		}
	})
}

// TestHandOverDeadline checks that the socket TCP hands out carries the
// deadline asked for, not the one the poller held.
func TestHandOverDeadline(t *testing.T) {
	for _, via := range []string{"TCP", "WriteTo"} {
		t.Run(via, func(t *testing.T) {
			c, s := pair(t)
			w := Wrap(c).(*Conn)
			early := time.Now().Add(time.Millisecond)
			_ = w.SetReadDeadline(early)
			_ = w.SetReadDeadline(time.Time{})
			passed(early)
			if _, err := s.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			if via == "WriteTo" {
				s.CloseWrite()
				var b bytes.Buffer
				if n, err := w.WriteTo(&b); err != nil || b.String() != "x" {
					t.Fatalf("WriteTo = %d, %v (%q); want the peer's byte", n, err, b.String())
				}
				return
			}
			tc, _ := TCP(w)
			b := make([]byte, 1)
			if n, err := tc.Read(b); err != nil || n != 1 {
				t.Fatalf("Read on the handed-out socket = %d, %v; want the peer's byte", n, err)
			}
			// From now on deadlines go to the socket directly.
			_ = w.SetReadDeadline(time.Now().Add(time.Hour))
			early = time.Now().Add(time.Millisecond)
			_ = w.SetReadDeadline(time.Now().Add(time.Millisecond))
			passed(early)
			if _, err := tc.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read on the handed-out socket = %v, want a deadline error", err)
			}
		})
	}
}

// BenchmarkReadDeadlineIdleCycle is a connection server's per-request
// deadline work: an idle deadline moved forward, then cleared.
func BenchmarkReadDeadlineIdleCycle(b *testing.B) {
	for _, fl := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{{"net", func(c net.Conn) net.Conn { return c }}, {"sockio", Wrap}} {
		b.Run(fl.name, func(b *testing.B) {
			c, _ := pair(b)
			w := fl.wrap(c)
			b.ReportAllocs()
			for b.Loop() {
				_ = w.SetReadDeadline(time.Now().Add(time.Hour))
				_ = w.SetReadDeadline(time.Time{})
			}
		})
	}
}
