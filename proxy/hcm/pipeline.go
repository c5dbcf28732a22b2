package hcm

import (
	"github.com/remora-mesh/remora/proxy/filter"
)

type frameKind uint8

const (
	frameHeaders frameKind = iota
	frameData
	frameTrailers
)

// frame is one piece of a stream in one direction. Data in a queued frame
// is owned by the pipeline (copied on enqueue).
type frame struct {
	kind frameKind
	h    *filter.HeaderMap
	data []byte
	end  bool
}

// pipeline runs frames through one direction's filters. Each filter i is
// flowing (Continue), stopped (StopIteration: later frames wait in in[i]
// without reaching it) or buffering (StopAndBuffer: later frames reach it
// and wait in held[i]). Resuming filter i passes held[i] on, then feeds
// in[i] to it. The stream's mutex guards a pipeline.
type pipeline struct {
	n    int
	call func(i int, fr *frame) filter.Status // runs filter i's hook
	sink func(fr *frame)                      // past the last filter
	// halted reports that the stream has ended or a local reply is
	// pending: delivery stops at once.
	halted func() bool

	stop   []filter.Status
	in     [][]frame
	held   [][]frame
	queued int // bytes of data held in queues
	limit  int
	// overflow is called (once) when queued exceeds limit.
	overflow func()
}

func (p *pipeline) reset(n, limit int) {
	p.n, p.limit, p.queued = n, limit, 0
	if cap(p.stop) < n {
		p.stop = make([]filter.Status, n)
		p.in = make([][]frame, n)
		p.held = make([][]frame, n)
	}
	p.stop = p.stop[:n]
	p.in = p.in[:n]
	p.held = p.held[:n]
	for i := 0; i < n; i++ {
		p.stop[i] = filter.Continue
		p.in[i] = p.in[i][:0]
		p.held[i] = p.held[i][:0]
	}
}

// blocked reports whether frames are waiting in front of a filter that
// stopped with StopIteration: the reader should not pull more input.
func (p *pipeline) blocked() bool {
	for i := 0; i < p.n; i++ {
		if p.stop[i] == filter.StopIteration || len(p.in[i]) > 0 {
			return true
		}
	}
	return false
}

// enqueue appends fr to q, copying data and coalescing adjacent data frames.
func (p *pipeline) enqueue(q []frame, fr *frame) []frame {
	if fr.kind == frameData {
		p.queued += len(fr.data)
		if p.limit > 0 && p.queued > p.limit && p.overflow != nil {
			p.overflow()
		}
		if k := len(q); k > 0 && q[k-1].kind == frameData && !q[k-1].end {
			q[k-1].data = append(q[k-1].data, fr.data...)
			q[k-1].end = fr.end
			return q
		}
		c := *fr
		c.data = append([]byte(nil), fr.data...)
		return append(q, c)
	}
	return append(q, *fr)
}

func (p *pipeline) dequeued(fr *frame) {
	if fr.kind == frameData {
		p.queued -= len(fr.data)
	}
}

// deliver passes fr to filter i and on.
func (p *pipeline) deliver(i int, fr *frame) {
	for {
		if p.halted() {
			return
		}
		if i >= p.n {
			p.sink(fr)
			return
		}
		switch {
		case p.stop[i] == filter.StopIteration || len(p.in[i]) > 0:
			p.in[i] = p.enqueue(p.in[i], fr)
			return
		case p.stop[i] == filter.StopAndBuffer:
			st := p.call(i, fr)
			if p.halted() {
				return
			}
			p.held[i] = p.enqueue(p.held[i], fr)
			if st == filter.Continue {
				p.resume(i)
			}
			return
		}
		st := p.call(i, fr)
		if p.halted() {
			return
		}
		if st != filter.Continue {
			p.stop[i] = st
			p.held[i] = p.enqueue(p.held[i], fr)
			return
		}
		i++
	}
}

// resume continues filter i after a stop.
func (p *pipeline) resume(i int) {
	if i < 0 || i >= p.n || p.stop[i] == filter.Continue {
		return
	}
	p.stop[i] = filter.Continue
	held := p.held[i]
	p.held[i] = nil
	for k := range held {
		p.dequeued(&held[k])
		p.deliver(i+1, &held[k])
	}
	if len(p.in[i]) == 0 {
		return
	}
	in := p.in[i]
	p.in[i] = nil
	for k := range in {
		p.dequeued(&in[k])
		p.deliver(i, &in[k])
	}
}

// heldData returns the data held after filter i (DecodingBuffer).
func (p *pipeline) heldData(i int) []byte {
	if i < 0 || i >= p.n {
		return nil
	}
	for k := range p.held[i] {
		if p.held[i][k].kind == frameData {
			return p.held[i][k].data
		}
	}
	return nil
}
