// Package extauthz is the ext_authz HTTP filter: it asks an Envoy v3
// external authorization service (envoy.service.auth.v3.Authorization,
// e.g. opa-envoy-plugin or `remora mixer`) whether each request may proceed.
//
// The request's headers (and optionally its body) enter as a CheckRequest;
// an OK answer lets the request continue with the service's header
// mutations, a denial ends it with the service's status, headers and body
// (flag UAEX), and a failure to reach the service follows
// failure_mode_allow.
//
//	http_filters:
//	- name: ext_authz
//	  config:
//	    grpc_service: {address: 127.0.0.1:9091, timeout: 200ms}
//	    failure_mode_allow: false
//	    with_request_body: {max_request_bytes: 8192, allow_partial_message: true}
package extauthz

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev3 "github.com/remora-mesh/remora/proto/envoy/config/core/v3"
	authv3 "github.com/remora-mesh/remora/proto/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/remora-mesh/remora/internal/config"
	"github.com/remora-mesh/remora/internal/sockio"
	"github.com/remora-mesh/remora/internal/tlsconfig"
	"github.com/remora-mesh/remora/proxy/filter"
)

// Name is the filter's name in configuration.
const Name = "ext_authz"

// MetadataNamespace is where the service's dynamic_metadata is recorded.
const MetadataNamespace = "envoy.filters.http.ext_authz"

func init() { filter.Register(factory{}) }

// Config is the filter's listener-level configuration (Envoy's ExtAuthz,
// gRPC service only).
type Config struct {
	GRPCService GRPCService `yaml:"grpc_service"`
	// FailureModeAllow lets requests through when the service cannot be
	// reached or errs; they get x-envoy-auth-failure-mode-allowed: true.
	FailureModeAllow bool `yaml:"failure_mode_allow,omitempty"`
	// StatusOnError is the status of a request refused because the
	// service failed (failure_mode_allow off). Default 403.
	StatusOnError int `yaml:"status_on_error,omitempty"`
	// WithRequestBody sends the request body (buffered) with the check.
	WithRequestBody *BodySettings `yaml:"with_request_body,omitempty"`
	// IncludePeerCertificate is accepted for Envoy compatibility; the
	// peer's URI SAN is always sent as source.principal.
	IncludePeerCertificate bool `yaml:"include_peer_certificate,omitempty"`
}

// GRPCService is the authorization service's address and call settings.
type GRPCService struct {
	Address string `yaml:"address"`
	// Timeout bounds each check. Default 200ms (Envoy's default).
	Timeout config.Duration `yaml:"timeout,omitempty"`
	// TLS: a CA file turns TLS on; cert and key add a client certificate.
	CAFile     string `yaml:"ca_file,omitempty"`
	CertFile   string `yaml:"cert_file,omitempty"`
	KeyFile    string `yaml:"key_file,omitempty"`
	ServerName string `yaml:"server_name,omitempty"`
}

// BodySettings controls sending the request body.
type BodySettings struct {
	// MaxRequestBytes bounds the body sent. Default 8192.
	MaxRequestBytes int `yaml:"max_request_bytes,omitempty"`
	// AllowPartialMessage sends the first max_request_bytes of a larger
	// body instead of refusing it with 413.
	AllowPartialMessage bool `yaml:"allow_partial_message,omitempty"`
	// PackAsBytes sends the body as raw_body instead of body.
	PackAsBytes bool `yaml:"pack_as_bytes,omitempty"`
}

// PerRoute is the per-route configuration (Envoy's ExtAuthzPerRoute).
type PerRoute struct {
	// Disabled skips the check on this route.
	Disabled bool `yaml:"disabled,omitempty"`
	// ContextExtensions are sent with the check.
	ContextExtensions map[string]string `yaml:"context_extensions,omitempty"`
}

// ApplyDefaults fills unset fields.
func (c *Config) ApplyDefaults() {
	if c.GRPCService.Timeout == 0 {
		c.GRPCService.Timeout = config.Duration(200 * time.Millisecond)
	}
	if c.StatusOnError == 0 {
		c.StatusOnError = 403
	}
	if c.WithRequestBody != nil && c.WithRequestBody.MaxRequestBytes == 0 {
		c.WithRequestBody.MaxRequestBytes = 8192
	}
}

// Validate reports every problem with its field path.
func (c *Config) Validate() error {
	var errs []error
	if c.GRPCService.Address == "" {
		errs = append(errs, errors.New("grpc_service.address: required"))
	}
	if (c.GRPCService.CertFile == "") != (c.GRPCService.KeyFile == "") {
		errs = append(errs, errors.New("grpc_service: cert_file and key_file go together"))
	}
	if c.StatusOnError < 100 || c.StatusOnError > 599 {
		errs = append(errs, fmt.Errorf("status_on_error: %d is not an HTTP status", c.StatusOnError))
	}
	if b := c.WithRequestBody; b != nil && b.MaxRequestBytes < 0 {
		errs = append(errs, errors.New("with_request_body.max_request_bytes: must be positive"))
	}
	return errors.Join(errs...)
}

type factory struct{}

var _ filter.Factory = factory{}

func (factory) Name() string { return Name }

// compiled is a parsed config with its client and stats.
type compiled struct {
	cfg    Config
	client authv3.AuthorizationClient
	log    *zap.Logger
	m      *metrics
}

// parseConfig decodes, completes and validates the filter's config.
func parseConfig(node *yaml.Node) (Config, error) {
	var cfg Config
	if err := config.DecodeStrict(node, &cfg); err != nil {
		return Config{}, fmt.Errorf("ext_authz: %w", err)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("ext_authz: %w", err)
	}
	return cfg, nil
}

func (factory) ParseConfig(node *yaml.Node, env filter.Env) (any, error) {
	cfg, err := parseConfig(node)
	if err != nil {
		return nil, err
	}
	creds, err := transportCredentials(cfg.GRPCService)
	if err != nil {
		return nil, fmt.Errorf("ext_authz: grpc_service: %w", err)
	}
	conn, err := grpc.NewClient(cfg.GRPCService.Address, grpc.WithContextDialer(sockio.DialContext), grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("ext_authz: grpc_service.address: %w", err)
	}
	if env.AddCloser != nil {
		env.AddCloser(conn.Close)
	}
	m, err := newMetrics(env.Registry)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ext_authz: metrics: %w", err)
	}
	log := env.Logger
	if log == nil {
		log = zap.NewNop()
	}
	return &compiled{cfg: cfg, client: authv3.NewAuthorizationClient(conn), log: log.Named(Name), m: m}, nil
}

func (factory) ParsePerRouteConfig(node *yaml.Node) (any, error) {
	var pr PerRoute
	if err := config.DecodeStrict(node, &pr); err != nil {
		return nil, fmt.Errorf("ext_authz: %w", err)
	}
	return &pr, nil
}

func transportCredentials(g GRPCService) (credentials.TransportCredentials, error) {
	return tlsconfig.Client{CAFile: g.CAFile, CertFile: g.CertFile, KeyFile: g.KeyFile, ServerName: g.ServerName}.Credentials()
}

// metrics are Envoy's ext_authz stats.
type metrics struct {
	ok, denied, errored, failureModeAllowed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "remora", Subsystem: "ext_authz",
		Name: "checks_total", Help: "ext_authz checks by result: ok, denied, error, failure_mode_allowed."}, []string{"result"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			vec = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return &metrics{ok: vec.WithLabelValues("ok"), denied: vec.WithLabelValues("denied"),
		errored: vec.WithLabelValues("error"), failureModeAllowed: vec.WithLabelValues("failure_mode_allowed")}, nil
}

func (factory) NewFilter(cfg any, cb filter.Callbacks) filter.StreamFilter {
	return &Filter{c: cfg.(*compiled), cb: cb}
}

// Filter checks one stream.
type Filter struct {
	filter.PassThrough
	c        *compiled
	cb       filter.Callbacks
	headers  *filter.HeaderMap
	perRoute *PerRoute
	respAdd  []*corev3.HeaderValueOption
	buffered bool   // waiting for the body
	body     []byte // the body collected so far, at most max_request_bytes+1
}

// DecodeHeaders checks the request, or waits for its body when the body is
// sent too.
func (f *Filter) DecodeHeaders(headers *filter.HeaderMap, endStream bool) filter.Status {
	if r := f.cb.Route(); r != nil {
		f.perRoute, _ = r.PerFilterConfig(Name).(*PerRoute)
	}
	if f.perRoute != nil && f.perRoute.Disabled {
		return filter.Continue
	}
	f.headers = headers
	if f.c.cfg.WithRequestBody != nil && !endStream {
		f.buffered = true
		return filter.StopAndBuffer
	}
	return f.check(nil)
}

// DecodeData collects the body (up to max_request_bytes, plus one byte to
// notice a larger one) and checks once it is complete or the limit is hit.
// The connection manager holds the data meanwhile (StopAndBuffer).
func (f *Filter) DecodeData(data []byte, endStream bool) filter.Status {
	if !f.buffered {
		return filter.Continue
	}
	max := f.c.cfg.WithRequestBody.MaxRequestBytes
	if room := max + 1 - len(f.body); room > 0 {
		f.body = append(f.body, data[:min(room, len(data))]...)
	}
	if !endStream && len(f.body) <= max {
		return filter.StopAndBuffer
	}
	body := f.body
	if len(body) > max {
		if !f.c.cfg.WithRequestBody.AllowPartialMessage {
			f.cb.SendLocalReply(filter.LocalReply{Code: 413, Body: "Payload Too Large", Details: "ext_authz_request_too_large"})
			return filter.StopIteration
		}
		body = body[:max]
	}
	f.buffered = false
	return f.check(body)
}

func (f *Filter) check(body []byte) filter.Status {
	c := f.c
	ctx, cancel := context.WithTimeout(f.cb.Context(), c.cfg.GRPCService.Timeout.D())
	defer cancel()
	resp, err := c.client.Check(ctx, f.checkRequest(body))
	if err == nil && resp.GetStatus().GetCode() == int32(codes.OK) {
		c.m.ok.Inc()
		ok := resp.GetOkResponse()
		for _, h := range ok.GetHeaders() {
			setHeader(f.headers, h)
		}
		for _, name := range ok.GetHeadersToRemove() {
			f.headers.Del(filter.LowerName(name))
		}
		f.respAdd = ok.GetResponseHeadersToAdd()
		for k, v := range resp.GetDynamicMetadata().GetFields() {
			f.cb.StreamInfo().SetDynamicMetadata(MetadataNamespace, k, v.AsInterface())
		}
		f.cb.ClearRouteCache()
		return filter.Continue
	}
	if err != nil {
		c.log.Debug("authorization service failed", zap.Error(err))
		if c.cfg.FailureModeAllow {
			c.m.failureModeAllowed.Inc()
			f.headers.Set("x-envoy-auth-failure-mode-allowed", "true")
			return filter.Continue
		}
		c.m.errored.Inc()
		f.cb.SendLocalReply(filter.LocalReply{Code: c.cfg.StatusOnError, Flag: filter.UnauthorizedExternalService, Details: "ext_authz_error"})
		return filter.StopIteration
	}
	c.m.denied.Inc()
	denied := resp.GetDeniedResponse()
	reply := filter.LocalReply{Code: 403, Body: denied.GetBody(), Flag: filter.UnauthorizedExternalService, Details: "ext_authz_denied"}
	if code := int(denied.GetStatus().GetCode()); code >= 100 && code <= 599 {
		reply.Code = code
	}
	for _, h := range denied.GetHeaders() {
		reply.Headers = append(reply.Headers, filter.HeaderField{Name: filter.LowerName(h.GetHeader().GetKey()), Value: h.GetHeader().GetValue()})
	}
	f.cb.SendLocalReply(reply)
	return filter.StopIteration
}

// EncodeHeaders adds the service's response headers.
func (f *Filter) EncodeHeaders(headers *filter.HeaderMap, endStream bool) filter.Status {
	for _, h := range f.respAdd {
		setHeader(headers, h)
	}
	return filter.Continue
}

// setHeader applies one HeaderValueOption: append when asked (the v3
// append_action, or the deprecated append flag), otherwise overwrite.
func setHeader(h *filter.HeaderMap, o *corev3.HeaderValueOption) {
	name, value := filter.LowerName(o.GetHeader().GetKey()), o.GetHeader().GetValue()
	if name == "" {
		return
	}
	switch {
	//lint:ignore SA1019 services still send the deprecated append flag; Envoy honours it.
	case o.GetAppend().GetValue() || o.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		h.Append(name, value)
	case o.GetAppendAction() == corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !h.Has(name) {
			h.Set(name, value)
		}
	case o.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if h.Has(name) {
			h.Set(name, value)
		}
	default:
		h.Set(name, value)
	}
}

// checkRequest describes the request as Envoy does.
func (f *Filter) checkRequest(body []byte) *authv3.CheckRequest {
	info := f.cb.StreamInfo()
	h := f.headers
	headers := make(map[string]string, h.Len())
	for _, fl := range h.Fields() {
		if v, dup := headers[fl.Name]; dup {
			headers[fl.Name] = v + "," + fl.Value
		} else {
			headers[fl.Name] = fl.Value
		}
	}
	path := h.Path()
	_, query, _ := strings.Cut(path, "?")
	httpReq := &authv3.AttributeContext_HttpRequest{
		Id:       h.Value("x-request-id"),
		Method:   h.Method(),
		Headers:  headers,
		Path:     path,
		Host:     h.Authority(),
		Scheme:   h.Scheme(),
		Query:    query,
		Protocol: info.Protocol,
		Size:     -1,
	}
	if body != nil {
		httpReq.Size = int64(len(body))
		if f.c.cfg.WithRequestBody.PackAsBytes {
			httpReq.RawBody = append([]byte(nil), body...)
		} else {
			httpReq.Body = string(body)
		}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress(info.DownstreamRemoteAddress), Principal: info.DownstreamPeerURISAN},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress(info.DownstreamLocalAddress)},
		Request:     &authv3.AttributeContext_Request{Time: timestamppb.New(info.StartTime), Http: httpReq},
	}}
	if f.perRoute != nil && len(f.perRoute.ContextExtensions) > 0 {
		req.Attributes.ContextExtensions = f.perRoute.ContextExtensions
	}
	return req
}

func socketAddress(ap netip.AddrPort) *corev3.Address {
	if !ap.IsValid() {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ap.Addr().String(), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}
