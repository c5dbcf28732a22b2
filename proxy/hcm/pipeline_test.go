package hcm

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/remora-mesh/remora/proxy/filter"
)

// script is a filter's answer per frame kind; missing means Continue.
type script map[string]filter.Status

// runPipeline delivers frames through filters answering per their script
// and records every call as "f<i>:<kind>" and what reached the sink.
type harness struct {
	p       pipeline
	scripts []script
	calls   []string
	sunk    []string
	halt    bool
	over    bool
}

func kindName(fr *frame) string {
	switch fr.kind {
	case frameHeaders:
		return "H"
	case frameData:
		return "D(" + string(fr.data) + ")"
	}
	return "T"
}

func newHarness(limit int, scripts ...script) *harness {
	h := &harness{scripts: scripts}
	h.p.call = func(i int, fr *frame) filter.Status {
		k := kindName(fr)
		h.calls = append(h.calls, fmt.Sprintf("f%d:%s", i, k))
		if st, ok := h.scripts[i][k]; ok {
			return st
		}
		return h.scripts[i][k[:1]]
	}
	h.p.sink = func(fr *frame) { h.sunk = append(h.sunk, kindName(fr)) }
	h.p.halted = func() bool { return h.halt }
	h.p.overflow = func() { h.over = true }
	h.p.reset(len(scripts), limit)
	return h
}

func (h *harness) send(frames ...frame) {
	for i := range frames {
		h.p.deliver(0, &frames[i])
	}
}

var (
	hdr      = frame{kind: frameHeaders}
	data     = func(s string) frame { return frame{kind: frameData, data: []byte(s)} }
	lastData = func(s string) frame { return frame{kind: frameData, data: []byte(s), end: true} }
	trailers = frame{kind: frameTrailers, end: true}
)

func TestPipeline(t *testing.T) {
	tests := []struct {
		name      string
		scripts   []script
		frames    []frame
		resume    []int
		wantCalls string
		wantSunk  string
		blocked   bool
	}{
		{"all continue", []script{{}, {}}, []frame{hdr, data("a"), trailers}, nil,
			"f0:H f1:H f0:D(a) f1:D(a) f0:T f1:T", "H D(a) T", false},
		{"stop iteration holds later frames before the filter", []script{{"H": filter.StopIteration}, {}}, []frame{hdr, data("a"), lastData("b")}, nil,
			"f0:H", "", true},
		{"resume passes held then queued frames", []script{{"H": filter.StopIteration}, {}}, []frame{hdr, data("a"), lastData("b")}, []int{0},
			"f0:H f1:H f0:D(ab) f1:D(ab)", "H D(ab)", false},
		{"stop and buffer sees data, holds it after", []script{{}, {"H": filter.StopAndBuffer, "D": filter.StopAndBuffer}}, []frame{hdr, data("a"), data("b")}, nil,
			"f0:H f1:H f0:D(a) f1:D(a) f0:D(b) f1:D(b)", "", false},
		{"buffering filter continues at the end", []script{{"H": filter.StopAndBuffer, "D(a)": filter.StopAndBuffer, "D(b)": filter.Continue}, {}}, []frame{hdr, data("a"), lastData("b")}, nil,
			"f0:H f0:D(a) f0:D(b) f1:H f1:D(ab)", "H D(ab)", false},
		{"second filter stops after resume", []script{{"H": filter.StopIteration}, {"H": filter.StopIteration}}, []frame{hdr, lastData("x")}, []int{0},
			"f0:H f1:H f0:D(x)", "", true},
		{"data stop buffers trailers behind", []script{{"D": filter.StopIteration}, {}}, []frame{hdr, data("a"), trailers}, []int{0},
			"f0:H f1:H f0:D(a) f1:D(a) f0:T f1:T", "H D(a) T", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(0, tt.scripts...)
			h.send(tt.frames...)
			for _, i := range tt.resume {
				h.p.resume(i)
			}
			if got := strings.Join(h.calls, " "); got != tt.wantCalls {
				t.Errorf("calls = %s\nwant    %s", got, tt.wantCalls)
			}
			if got := strings.Join(h.sunk, " "); got != tt.wantSunk {
				t.Errorf("sunk = %q, want %q", got, tt.wantSunk)
			}
			if h.p.blocked() != tt.blocked {
				t.Errorf("blocked = %v, want %v", h.p.blocked(), tt.blocked)
			}
		})
	}
}

func TestPipelineLimitAndHalt(t *testing.T) {
	h := newHarness(4, script{"H": filter.StopAndBuffer, "D": filter.StopAndBuffer})
	h.send(hdr, data("abc"))
	if h.over {
		t.Fatal("overflow below the limit")
	}
	if got := string(h.p.heldData(0)); got != "abc" {
		t.Fatalf("held data %q", got)
	}
	h.send(data("de"))
	if !h.over {
		t.Fatal("no overflow above the limit")
	}
	h2 := newHarness(0, script{}, script{})
	h2.halt = true
	h2.send(hdr)
	if len(h2.calls) != 0 || len(h2.sunk) != 0 {
		t.Fatal("a halted pipeline delivered")
	}
	// The queue copies data: the caller may reuse its buffer.
	h3 := newHarness(0, script{"H": filter.StopIteration}, script{})
	buf := []byte("xy")
	h3.send(hdr)
	h3.p.deliver(0, &frame{kind: frameData, data: buf, end: true})
	buf[0] = 'Z'
	h3.p.resume(0)
	if !reflect.DeepEqual(h3.sunk, []string{"H", "D(xy)"}) {
		t.Fatalf("sunk %v", h3.sunk)
	}
}
