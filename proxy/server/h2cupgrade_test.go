package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestH2CUpgrade speaks h2c by HTTP/1.1 Upgrade (RFC 7540 section 3.2):
// 101, then the response to the upgraded request arrives on stream 1.
func TestH2CUpgrade(t *testing.T) {
	be := backend(t)
	s := startProxy(t, fmt.Sprintf(testConfig, be.Listener.Addr(), deadAddr(t)))
	c, err := net.Dial("tcp", s.ListenerAddr("main").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /upgraded HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	if status, body := upgradedStream1(t, c, br); status != "200" || body != "GET /upgraded 0" {
		t.Fatalf("got %q %q", status, body)
	}
}

// upgradedStream1 speaks HTTP/2 on c after a 101 to "Upgrade: h2c" and
// returns the status and body of stream 1, the upgraded request's
// response.
func upgradedStream1(t *testing.T, c net.Conn, br *bufio.Reader) (status, body string) {
	t.Helper()
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, br)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	dec := hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			status = f.Value
		}
	})
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading frames: %v (status %q body %q)", err, status, body)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.HeadersFrame:
			if f.StreamID == 1 {
				if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.DataFrame:
			if f.StreamID == 1 {
				body += string(f.Data())
				if f.StreamEnded() {
					return status, body
				}
			}
		}
	}
}
