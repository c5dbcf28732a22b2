package hcm

import (
	"net/http"
	"time"

	"github.com/remora-mesh/remora/proxy/filter"
)

// HTTP/1.1 upgrades (WebSocket and the like): the request goes upstream
// with its upgrade header and no end of stream. A 101 answer hijacks the
// downstream connection; from then on bytes flow both ways as body data
// through the filters (DecodeData / EncodeData) until either side closes.
// Any other answer ends the stream as usual.

// serveUpgrade waits for the upstream's answer to an upgrade request and,
// after a 101, pumps the client's bytes upstream.
func (s *stream) serveUpgrade() {
	for {
		s.mu.Lock()
		done, tunnel := s.completed || s.localReplied, s.tunnel != nil
		s.unlock()
		if done {
			return
		}
		if tunnel {
			break
		}
		select {
		case <-s.wake:
		case <-s.done:
			s.done <- struct{}{} // for waitDone
			return
		case <-s.ctxDone():
			return
		}
	}
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	buf := *bp
	for {
		n, err := s.tunnelR.Read(buf)
		s.touch()
		s.mu.Lock()
		if s.completed {
			s.unlock()
			return
		}
		s.info.BytesReceived += uint64(n)
		end := err != nil
		if n > 0 || end {
			s.decFrame = frame{kind: frameData, data: buf[:n], end: end}
			s.dec.deliver(0, &s.decFrame)
		}
		if end {
			s.reqDone = true
			s.info.LastDownstreamRxByteReceived = time.Since(s.info.StartTime)
		}
		s.unlock()
		s.drainSinkWait()
		if end {
			return
		}
	}
}

// switchProtocols answers 101 on the hijacked connection (mu held).
func (s *stream) switchProtocols(h *filter.HeaderMap) {
	info := &s.info
	if !s.upgrade || s.d.protoMajor() != 1 {
		info.SetResponseFlag(filter.UpstreamProtocolError)
		s.complete(true)
		return
	}
	conn, rd, err := s.d.switchProtocols(h)
	s.headersSent = true
	info.ResponseCode = http.StatusSwitchingProtocols
	info.ResponseHeaders = h
	info.FirstDownstreamTxByteSent = time.Since(info.StartTime)
	if err != nil {
		s.downstreamWriteFailed()
		return
	}
	s.tunnel, s.tunnelR = conn, rd
	s.signal()
}

// writeTunnel writes upstream bytes to the upgraded connection (mu held).
func (s *stream) writeTunnel(fr *frame) {
	if len(fr.data) > 0 {
		if _, err := s.tunnel.Write(fr.data); err != nil {
			s.downstreamWriteFailed()
			return
		}
		s.info.BytesSent += uint64(len(fr.data))
	}
	if fr.end {
		s.complete(false)
	}
}
