package server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// staleUpstream answers the first request on each connection (keep-alive)
// and closes the connection without a response on the second one, as an
// upstream that closed an idle connection just as the proxy reused it
// looks from the proxy: the request goes out, not a byte comes back.
type staleUpstream struct {
	ln       net.Listener
	conns    atomic.Int32
	requests atomic.Int32
	wg       sync.WaitGroup
}

func newStaleUpstream(t *testing.T) *staleUpstream {
	u := &staleUpstream{ln: listenLoopback(t)}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := u.ln.Accept()
			if err != nil {
				return
			}
			u.conns.Add(1)
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for n := 0; ; n++ {
					if !readRequest(br) {
						return
					}
					u.requests.Add(1)
					if n > 0 {
						return // closed with the request unanswered
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			}()
		}
	}()
	t.Cleanup(func() {
		u.ln.Close()
		u.wg.Wait()
	})
	return u
}

// readRequest reads one request head and its Content-Length body.
func readRequest(br *bufio.Reader) bool {
	cl := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if line == "\r\n" {
			break
		}
		if name, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(name, "content-length") {
			cl, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	_, err := br.Discard(cl)
	return err == nil
}

// TestStalePooledConnection: a request written to a pooled connection
// that the upstream closed before a byte of the response is sent again on
// a new connection when it is replayable (a safe method, or an idempotency
// key, and no body); any other request fails 503 (UC).
func TestStalePooledConnection(t *testing.T) {
	tests := []struct {
		name      string
		request   string
		status    int
		conns     int32
		requests  int32 // reaching the upstream, the warm-up included
		wantRetry bool
	}{
		{"GET", "GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 200, 2, 3, true},
		{"HEAD", "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", 200, 2, 3, true},
		{"DELETE with idempotency-key", "DELETE /x HTTP/1.1\r\nHost: a\r\nIdempotency-Key: k1\r\n\r\n", 200, 2, 3, true},
		{"DELETE", "DELETE /x HTTP/1.1\r\nHost: a\r\n\r\n", 503, 1, 2, false},
		{"POST with a body", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", 503, 1, 2, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			up := newStaleUpstream(t)
			s := startRouteAll(t, up.ln.Addr())
			c, err := net.Dial("tcp", s.ListenerAddr("main").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			if code, _, _ := rawGet(t, c, br, "/warm"); code != 200 {
				t.Fatalf("warm-up: status %d", code)
			}
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tc.request)
			resp, err := http.ReadResponse(br, &http.Request{Method: strings.Fields(tc.request)[0]})
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if n := up.conns.Load(); n != tc.conns {
				t.Errorf("upstream connections %d, want %d", n, tc.conns)
			}
			if n := up.requests.Load(); n != tc.requests {
				t.Errorf("upstream requests %d, want %d", n, tc.requests)
			}
		})
	}
}
