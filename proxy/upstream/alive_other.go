//go:build !linux

package upstream

// alive reports whether an idle pooled connection may carry a request.
// Without a portable non-blocking peek, only HTTP/2 connections and
// buffered stray bytes are checked; a connection the peer closed while
// idle fails its next request (UC), which the router may retry.
func (pc *pconn) alive() bool {
	if pc.cc != nil {
		return pc.cc.CanTakeNewRequest()
	}
	return pc.h1.br.Buffered() == 0
}
