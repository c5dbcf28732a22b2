// Package attributes holds Istio's attribute model: typed attribute bags,
// the attribute vocabulary, the Mixer global dictionary, and the compressed
// wire form used by istio.mixer.v1 Check and Report.
//
// A Bag is an immutable, sorted set of named, typed values, cheap to copy
// and safe for concurrent reads. A Builder collects values for one bag and
// is not safe for concurrent use. Bags enter from the sidecar's request
// path (a Builder filled by the mixer filter), from the wire (Decompress,
// DecodeReport, DecodeForwarded) and leave to the wire (Compress,
// ReportEncoder, EncodeForwarded) or to the policy engine.
//
// Report batches have a second decoder for servers: ReportDecoder and
// DecodeReportFunc read the ReportRequest wire bytes with protowire, without
// the generated types, into bags whose storage is reused from batch to
// batch (see their ownership rules). FuzzDecodeReportWire holds it to the
// same results as proto.Unmarshal followed by DecodeReport.
//
// A server that reads only some attributes uses a third: a Projection names
// them once (resolved to global dictionary indexes), and ProjectionDecoder
// checks every record as ReportDecoder does but returns only the projected
// values, one row per record, building no bag and resolving nothing else.
// It hands anything unusual, and every error, to ReportDecoder, and
// FuzzProjectionDecoder holds it to ReportDecoder's values and errors.
package attributes
