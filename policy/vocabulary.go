package policy

import "github.com/remora-mesh/remora/attributes"

// inputLeaf ties one place of the input document to the attribute it is
// built from. The input builder and the reference analysis share this
// table; TestInputLeavesMatchBuilder keeps them in step.
type inputLeaf struct {
	path  []string // below input
	attrs []attrRef
}

// attrRef names an attribute, or one key of a string-map attribute.
type attrRef struct {
	name string
	key  string
	// keyed marks a reference to key only; otherwise the whole value.
	keyed bool
}

// mapLeaf reports whether the leaf is a string-map attribute whose keys
// become object keys in the input, so that a constant key below the leaf
// references only that map key.
func (l inputLeaf) mapLeaf() bool {
	return len(l.attrs) == 1 && !l.attrs[0].keyed && attributes.Vocabulary[l.attrs[0].name] == attributes.KindStringMap ||
		len(l.attrs) == 1 && l.attrs[0].name == attributes.ContextExtensions
}

func whole(names ...string) []attrRef {
	refs := make([]attrRef, len(names))
	for i, n := range names {
		refs[i] = attrRef{name: n}
	}
	return refs
}

// bodyDeps are the attributes parsed_body and truncated_body are derived
// from: the body, its content type and its declared length.
var bodyDeps = []attrRef{
	{name: attributes.RequestBody},
	{name: attributes.RequestHeaders, key: "content-type", keyed: true},
	{name: attributes.RequestHeaders, key: "content-length", keyed: true},
}

// leafID names one entry of inputLeaves.
type leafID uint8

const (
	leafHTTPID leafID = iota
	leafHTTPMethod
	leafHTTPPath
	leafHTTPHost
	leafHTTPScheme
	leafHTTPProtocol
	leafHTTPSize
	leafHTTPHeaders
	leafHTTPBody
	leafRequestTime
	leafSourceIP
	leafSourcePort
	leafSourcePrincipal
	leafSourceLabels
	leafDestinationIP
	leafDestinationPort
	leafDestinationPrincipal
	leafDestinationLabels
	leafContextExtensions
	leafSNI
	leafParsedPath
	leafParsedQuery
	leafParsedBody
	leafTruncatedBody
	numLeaves
)

// leafSet is a set of leaves.
type leafSet uint32

// allLeaves holds every leaf.
const allLeaves = leafSet(1)<<numLeaves - 1

// httpLeaves are the leaves below attributes.request.http.
const httpLeaves = leafSet(1)<<(leafHTTPBody+1) - 1

func (s leafSet) has(id leafID) bool { return s&(1<<id) != 0 }

// inputLeaves lists every input path the builder fills from the bag, except
// mixer_attributes, which holds the bag itself.
var inputLeaves = [numLeaves]inputLeaf{
	leafHTTPID:               {[]string{"attributes", "request", "http", "id"}, whole(attributes.RequestID)},
	leafHTTPMethod:           {[]string{"attributes", "request", "http", "method"}, whole(attributes.RequestMethod)},
	leafHTTPPath:             {[]string{"attributes", "request", "http", "path"}, whole(attributes.RequestPath)},
	leafHTTPHost:             {[]string{"attributes", "request", "http", "host"}, whole(attributes.RequestHost)},
	leafHTTPScheme:           {[]string{"attributes", "request", "http", "scheme"}, whole(attributes.RequestScheme)},
	leafHTTPProtocol:         {[]string{"attributes", "request", "http", "protocol"}, whole(attributes.RequestProtocol)},
	leafHTTPSize:             {[]string{"attributes", "request", "http", "size"}, whole(attributes.RequestSize)},
	leafHTTPHeaders:          {[]string{"attributes", "request", "http", "headers"}, whole(attributes.RequestHeaders)},
	leafHTTPBody:             {[]string{"attributes", "request", "http", "body"}, whole(attributes.RequestBody)},
	leafRequestTime:          {[]string{"attributes", "request", "time"}, whole(attributes.RequestTime)},
	leafSourceIP:             {[]string{"attributes", "source", "address", "socketAddress", "address"}, whole(attributes.SourceIP)},
	leafSourcePort:           {[]string{"attributes", "source", "address", "socketAddress", "portValue"}, whole(attributes.SourcePort)},
	leafSourcePrincipal:      {[]string{"attributes", "source", "principal"}, whole(attributes.SourcePrincipal)},
	leafSourceLabels:         {[]string{"attributes", "source", "labels"}, whole(attributes.SourceLabels)},
	leafDestinationIP:        {[]string{"attributes", "destination", "address", "socketAddress", "address"}, whole(attributes.DestinationIP)},
	leafDestinationPort:      {[]string{"attributes", "destination", "address", "socketAddress", "portValue"}, whole(attributes.DestinationPort)},
	leafDestinationPrincipal: {[]string{"attributes", "destination", "principal"}, whole(attributes.DestinationPrincipal)},
	leafDestinationLabels:    {[]string{"attributes", "destination", "labels"}, whole(attributes.DestinationLabels)},
	leafContextExtensions:    {[]string{"attributes", "contextExtensions"}, whole(attributes.ContextExtensions)},
	leafSNI:                  {[]string{"attributes", "tlsSession", "sni"}, whole(attributes.ConnectionRequestedServerName)},
	leafParsedPath:           {[]string{"parsed_path"}, whole(attributes.RequestPath)},
	leafParsedQuery:          {[]string{"parsed_query"}, whole(attributes.RequestPath)},
	leafParsedBody:           {[]string{"parsed_body"}, bodyDeps},
	leafTruncatedBody:        {[]string{"truncated_body"}, bodyDeps},
}

// Top-level keys of the input document.
const (
	inputKeyMixer = "mixer_attributes"
)
