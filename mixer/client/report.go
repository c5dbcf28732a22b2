package client

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/remora-mesh/remora/attributes"
	mixerv1 "github.com/remora-mesh/remora/proto/mixer/v1"
)

// record is one queued report bag, its approximate size and the builder
// whose storage it uses (recycled once the bag is encoded).
type record struct {
	bag  attributes.Bag
	size int
	bd   *attributes.Builder
}

// batcher collects report bags into batches and delivers them. Records
// wait in a FIFO queue bounded in records and bytes (counting the batch
// being sent); the sender goroutine takes the oldest records, up to
// max_batch_entries, once their batch is complete (by size or timer) and
// retries a failed batch until it is delivered or the client closes. add
// never blocks; when the queue is full the oldest waiting records are
// dropped and counted.
type batcher struct {
	cfg ReportConfig
	cc  grpc.ClientConnInterface
	m   *metrics
	log *zap.Logger
	sem mixerv1.ReportRequest_RepeatedAttributesSemantics

	mu    sync.Mutex
	queue []record // waiting records are queue[head:], oldest first
	head  int
	bytes int // of the waiting records
	// ready counts the waiting records that belong to closed batches:
	// the sender may take them. The others wait for their batch to fill
	// up or for the timer.
	ready                   int
	inflight, inflightBytes int         // the batch being sent
	timer                   *time.Timer // runs while an open batch has records
	closing                 bool

	// delivered, when set (by tests), is called after each delivered batch.
	delivered func(records int)

	// Owned by the sender goroutine: the batch being sent, encoded
	// straight to wire bytes with buffers kept from batch to batch.
	enc      attributes.ReportEncoder
	bags     []attributes.Bag
	builders []*attributes.Builder
	wire     []byte

	// builders holds report builders whose bags have been encoded (or
	// dropped): nothing refers to their storage any more, so builder
	// hands them out again after Reset.
	pool sync.Pool

	wake chan struct{} // capacity 1: something is ready, or closing
	done chan struct{} // closed when the sender exits
	stop context.CancelFunc
	ctx  context.Context
}

func newBatcher(cfg ReportConfig, cc grpc.ClientConnInterface, m *metrics, log *zap.Logger) *batcher {
	b := &batcher{cfg: cfg, cc: cc, m: m, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	if cfg.Encoding == EncodingIndependent {
		b.sem = mixerv1.ReportRequest_INDEPENDENT_ENCODING
	}
	b.ctx, b.stop = context.WithCancel(context.Background())
	go b.run()
	return b
}

// recordSize approximates the memory a bag holds.
func recordSize(bag attributes.Bag) int {
	n := 64
	for name, v := range bag.All() {
		n += len(name) + 48
		switch v.Kind() {
		case attributes.KindString:
			n += len(v.StringValue())
		case attributes.KindBytes, attributes.KindIPAddress:
			n += len(v.BytesValue())
		case attributes.KindStringMap:
			for _, kv := range v.StringMapValue().Entries() {
				n += len(kv.Key) + len(kv.Value) + 32
			}
		}
	}
	return n
}

// waiting is the number of records waiting. Called with mu held.
func (b *batcher) waiting() int { return len(b.queue) - b.head }

// builder returns a report builder holding base's attributes, reusing
// the storage of an encoded report when there is one.
func (b *batcher) builder(base attributes.Bag) *attributes.Builder {
	bd, _ := b.pool.Get().(*attributes.Builder)
	if bd == nil {
		bd = new(attributes.Builder)
	}
	bd.Reset(base)
	return bd
}

// recycle makes the storage of builders whose bags nothing uses any more
// available to builder.
func (b *batcher) recycle(bds []*attributes.Builder) {
	for _, bd := range bds {
		bd.Reset(attributes.Bag{}) // drop the references to the old bag's values
		b.pool.Put(bd)
	}
}

// add queues the bag bd builds, dropping the oldest waiting records if the
// queue is full. The batcher owns bd from then on.
func (b *batcher) add(bd *attributes.Builder) {
	bag := bd.Build()
	size := recordSize(bag)
	b.mu.Lock()
	if b.closing {
		b.mu.Unlock()
		b.m.reportRecordsDropped.Inc()
		return
	}
	b.queue = append(b.queue, record{bag: bag, size: size, bd: bd})
	b.bytes += size
	b.makeRoom()
	open := b.waiting() - b.ready
	switch {
	case open >= b.cfg.MaxBatchEntries:
		b.ready = b.waiting()
		b.m.reportFlushBySize.Inc()
		b.stopTimer()
		b.signal()
	case open == 1:
		b.startTimer()
	}
	b.updateGauges()
	b.mu.Unlock()
}

// makeRoom drops the oldest waiting records until the queue and the batch
// in flight fit the bounds. Called with mu held.
func (b *batcher) makeRoom() {
	dropped := 0
	for b.waiting() > 0 && (b.waiting()+b.inflight > b.cfg.MaxQueueEntries || b.bytes+b.inflightBytes > b.cfg.MaxQueueBytes) {
		b.bytes -= b.queue[b.head].size
		b.queue[b.head] = record{}
		b.head++
		if b.ready > 0 {
			b.ready--
		}
		dropped++
	}
	if dropped > 0 {
		b.m.reportRecordsDropped.Add(float64(dropped))
	}
	b.compact()
}

// compact reclaims the consumed front of the queue. Called with mu held.
func (b *batcher) compact() {
	switch {
	case b.head == len(b.queue):
		b.queue, b.head = b.queue[:0], 0
	case b.head > 1024 && b.head > len(b.queue)/2:
		n := copy(b.queue, b.queue[b.head:])
		clear(b.queue[n:])
		b.queue, b.head = b.queue[:n], 0
	}
}

func (b *batcher) startTimer() {
	if b.timer == nil {
		b.timer = time.AfterFunc(b.cfg.MaxBatchTime.D(), b.timerFired)
		return
	}
	b.timer.Reset(b.cfg.MaxBatchTime.D())
}

func (b *batcher) stopTimer() {
	if b.timer != nil {
		b.timer.Stop()
	}
}

func (b *batcher) timerFired() { b.closeBatch(true) }

// closeBatch makes the open batch ready to send.
func (b *batcher) closeBatch(byTimer bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ready == b.waiting() {
		return
	}
	if byTimer {
		b.m.reportFlushByTimer.Inc()
	}
	b.ready = b.waiting()
	b.signal()
}

func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *batcher) updateGauges() {
	b.m.reportQueueRecords.Set(float64(b.waiting() + b.inflight))
	b.m.reportQueueBytes.Set(float64(b.bytes + b.inflightBytes))
}

// run is the sender goroutine.
func (b *batcher) run() {
	defer close(b.done)
	for {
		b.mu.Lock()
		n := min(b.ready, b.cfg.MaxBatchEntries)
		if n == 0 {
			closing := b.closing
			b.mu.Unlock()
			if closing {
				return
			}
			select {
			case <-b.wake:
			case <-b.ctx.Done():
				return
			}
			continue
		}
		bags := slices.Grow(b.bags[:0], n)[:n]
		bds := b.builders[:0]
		size := 0
		for i := range bags {
			r := &b.queue[b.head+i]
			bags[i], size = r.bag, size+r.size
			bds = append(bds, r.bd)
			*r = record{}
		}
		b.head += n
		b.ready -= n
		b.bytes -= size
		b.inflight, b.inflightBytes = n, size
		b.compact()
		b.mu.Unlock()

		// Encode once; the bytes are all a retry needs, so the bags'
		// storage goes back to the pool before the first attempt.
		b.wire = b.enc.Append(b.wire[:0], bags, b.sem, attributes.GlobalWordCount())
		clear(bags)
		b.bags = bags
		b.recycle(bds)
		clear(bds)
		b.builders = bds
		delivered := b.send(n)
		b.mu.Lock()
		if delivered {
			b.inflight, b.inflightBytes = 0, 0
			b.m.reportRecordsSent.Add(float64(n))
			b.m.reportBatchesSent.Inc()
		}
		b.updateGauges()
		hook := b.delivered
		b.mu.Unlock()
		if delivered && hook != nil {
			hook(n)
		}
		if !delivered {
			return // stopped while retrying; close counts what is left
		}
	}
}

// send delivers the batch of n records encoded in b.wire, retrying with
// backoff until it succeeds or the batcher is stopped. It reports whether
// the batch was delivered.
func (b *batcher) send(n int) bool {
	req := &wireReport{b.wire}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(b.ctx, b.cfg.Timeout.D())
		// WaitForReady: while the server restarts, wait for the
		// connection instead of failing at once.
		err := b.cc.Invoke(ctx, mixerv1.Mixer_Report_FullMethodName, req, new(mixerv1.ReportResponse),
			grpc.WaitForReady(true), grpc.ForceCodecV2(reportCodec))
		cancel()
		if err == nil {
			return true
		}
		// The transport may still hold the bytes of a failed attempt;
		// the next batch gets a buffer of its own.
		b.wire = nil
		b.m.reportSendFailures.Inc()
		if b.ctx.Err() != nil {
			return false
		}
		b.log.Debug("report failed, will retry", zap.Int("records", n), zap.Int("attempt", attempt), zap.Error(err))
		if !wait(b.ctx, backoffWait(attempt, b.cfg.BaseRetryWait.D(), b.cfg.MaxRetryWait.D())) {
			return false
		}
	}
}

// wireReport is an istio.mixer.v1.ReportRequest already in wire form.
type wireReport struct{ data []byte }

// reportCodec is grpc's proto codec, except that it sends a *wireReport's
// bytes as they are.
var reportCodec = wireCodec{encoding.GetCodecV2(grpcproto.Name)}

type wireCodec struct{ encoding.CodecV2 }

// Marshal implements encoding.CodecV2.
func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*wireReport); ok {
		return mem.BufferSlice{mem.SliceBuffer(r.data)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// close flushes: every waiting record becomes ready, and the sender drains
// the queue until ctx ends. Whatever is still undelivered then is counted
// as dropped.
func (b *batcher) close(ctx context.Context) error {
	b.mu.Lock()
	b.closing = true
	b.ready = b.waiting()
	b.stopTimer()
	b.signal()
	b.mu.Unlock()
	select {
	case <-b.done:
	case <-ctx.Done():
		b.stop()
		<-b.done
	}
	b.stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	if left := b.waiting() + b.inflight; left > 0 {
		b.m.reportRecordsDropped.Add(float64(left))
		b.queue, b.head, b.bytes, b.ready, b.inflight, b.inflightBytes = nil, 0, 0, 0, 0, 0
		b.updateGauges()
		return fmt.Errorf("mixer client: %d report records undelivered at close", left)
	}
	return nil
}

// flush closes the open batch now, as if its timer had fired.
func (b *batcher) flush() { b.closeBatch(false) }
