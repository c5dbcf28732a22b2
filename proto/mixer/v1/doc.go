// Package mixerv1 holds the generated Go code for Istio's istio.mixer.v1
// protocol (Mixer Check and Report, compressed attributes). The .proto files
// beside it are the source; `make proto` regenerates the .pb.go files with
// pinned generators. Wire compatibility with Istio's own generated types is
// proven by wire_test.go.
package mixerv1
