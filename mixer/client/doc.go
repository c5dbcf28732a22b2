// Package client is the sidecar's client for the Remora (or Istio) Mixer
// server: Check with a local decision cache and a network fail policy, and
// Report through a bounded, retrying batcher.
//
// Attribute bags enter through Check (the request's attributes) and Report
// (a finished request's attributes). Check answers from the cache when the
// server's referenced attributes say an earlier decision applies, and
// otherwise calls the server, retrying transport failures with randomized
// exponential backoff under one deduplication id. Report never blocks: bags
// are batched (flushed by size or by timer), compressed with shared words,
// queued up to a bound in records and bytes, and sent by one goroutine that
// retries failed batches with backoff instead of dropping them. Only when
// the queue is full are the oldest records dropped, and every drop is
// counted.
package client
