package filter

import (
	"net/netip"
	"time"
)

// Protocol names as StreamInfo.Protocol and %PROTOCOL% report them.
const (
	ProtocolHTTP10 = "HTTP/1.0"
	ProtocolHTTP11 = "HTTP/1.1"
	ProtocolHTTP2  = "HTTP/2"
	ProtocolTCP    = "" // tcp_proxy connections have no HTTP protocol
)

// StreamInfo is everything known about one HTTP stream or one TCP proxy
// connection. The connection manager owns it: filters and access-log
// handlers may read and set fields during their calls but must not keep the
// pointer after the stream ends (it is reused).
type StreamInfo struct {
	// StartTime is when the first byte of the request was received.
	StartTime time.Time
	// Protocol is ProtocolHTTP10, ProtocolHTTP11, ProtocolHTTP2 or ProtocolTCP.
	Protocol string

	// Offsets from StartTime; zero means the event did not happen.
	LastDownstreamRxByteReceived time.Duration
	FirstUpstreamTxByteSent      time.Duration
	LastUpstreamTxByteSent       time.Duration
	FirstUpstreamRxByteReceived  time.Duration
	LastUpstreamRxByteReceived   time.Duration
	FirstDownstreamTxByteSent    time.Duration
	LastDownstreamTxByteSent     time.Duration

	// BytesReceived counts request body bytes from downstream; BytesSent
	// response body bytes to downstream (Envoy's %BYTES_RECEIVED%/%BYTES_SENT%).
	BytesReceived uint64
	BytesSent     uint64

	// ResponseCode is the HTTP status sent downstream, 0 if none was sent.
	ResponseCode        int
	ResponseCodeDetails string
	ResponseFlags       ResponseFlags

	RouteName string

	UpstreamCluster                string
	UpstreamHost                   string // "ip:port" of the chosen endpoint
	UpstreamLocalAddress           string
	UpstreamTransportFailureReason string

	DownstreamRemoteAddress netip.AddrPort
	DownstreamLocalAddress  netip.AddrPort
	// DownstreamDirectRemoteAddress is the peer of the TCP connection, before
	// any x-forwarded-for or original-destination handling.
	DownstreamDirectRemoteAddress netip.AddrPort

	// RequestedServerName is the TLS SNI of the downstream connection.
	RequestedServerName string
	// DownstreamTLS reports whether the downstream connection used TLS;
	// DownstreamPeerURISAN the first URI SAN of a verified client
	// certificate (a SPIFFE id in a mesh), "" without one.
	DownstreamTLS        bool
	DownstreamPeerURISAN string

	// HealthCheck marks a request answered by a health-check filter.
	HealthCheck bool

	// RequestHeaders, ResponseHeaders and ResponseTrailers are the stream's
	// headers as the access-log handlers see them; nil when never received.
	RequestHeaders   *HeaderMap
	ResponseHeaders  *HeaderMap
	ResponseTrailers *HeaderMap

	// dynamicMetadata holds values set by filters, by namespace then key.
	dynamicMetadata map[string]map[string]any
	// filterState holds per-stream objects by key; see SetFilterState.
	filterState []filterStateEntry
}

type filterStateEntry struct {
	key   string
	value any
}

// SetFilterState stores a per-stream object under key, replacing any
// earlier one. It is how a filter hands state to later filters and to its
// own access-log handler (Envoy's filter state); keys are prefixed by the
// filter's name. The object lives until the stream's access-log handlers
// have run.
func (s *StreamInfo) SetFilterState(key string, value any) {
	for i := range s.filterState {
		if s.filterState[i].key == key {
			s.filterState[i].value = value
			return
		}
	}
	s.filterState = append(s.filterState, filterStateEntry{key, value})
}

// FilterState returns the object stored under key, nil if none.
func (s *StreamInfo) FilterState(key string) any {
	for i := range s.filterState {
		if s.filterState[i].key == key {
			return s.filterState[i].value
		}
	}
	return nil
}

// SetDynamicMetadata records a value under namespace and key, replacing
// any earlier one. Values should be strings, numbers, booleans or nil so
// that every sink can render them.
func (s *StreamInfo) SetDynamicMetadata(namespace, key string, value any) {
	if s.dynamicMetadata == nil {
		s.dynamicMetadata = make(map[string]map[string]any)
	}
	ns := s.dynamicMetadata[namespace]
	if ns == nil {
		ns = make(map[string]any)
		s.dynamicMetadata[namespace] = ns
	}
	ns[key] = value
}

// DynamicMetadata returns the value under namespace and key.
func (s *StreamInfo) DynamicMetadata(namespace, key string) (any, bool) {
	v, ok := s.dynamicMetadata[namespace][key]
	return v, ok
}

// DynamicMetadataNamespace returns every key of namespace. The map belongs
// to the StreamInfo and must not be modified.
func (s *StreamInfo) DynamicMetadataNamespace(namespace string) map[string]any {
	return s.dynamicMetadata[namespace]
}

// SetResponseFlag adds f to the stream's response flags.
func (s *StreamInfo) SetResponseFlag(f ResponseFlags) { s.ResponseFlags |= f }

// Duration is the time from StartTime to the last byte sent downstream, or
// zero before the stream has finished.
func (s *StreamInfo) Duration() time.Duration { return s.LastDownstreamTxByteSent }

// Reset clears the StreamInfo for reuse, keeping its metadata and filter
// state storage.
func (s *StreamInfo) Reset() {
	md, fs := s.dynamicMetadata, s.filterState
	clear(md)
	clear(fs)
	*s = StreamInfo{dynamicMetadata: md, filterState: fs[:0]}
}
