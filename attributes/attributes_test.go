package attributes

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestGlobalDictionary(t *testing.T) {
	if len(GlobalDictionary) != 222 {
		t.Fatalf("global dictionary has %d words, want 222", len(GlobalDictionary))
	}
	for i, want := range map[int]string{0: "source.ip", 15: "request.headers", 221: "context.proxy_version"} {
		if GlobalDictionary[i] != want {
			t.Errorf("word %d = %q, want %q", i, GlobalDictionary[i], want)
		}
	}
	// Quoted words are distinct words, and words may contain spaces.
	for _, w := range []string{"'200'", "200", "'0'", "0", `"-"`, "text/html; charset=utf-8", "gzip, deflate"} {
		if _, ok := globalIndex[w]; !ok {
			t.Errorf("word %q missing", w)
		}
	}
}

func TestBuilder(t *testing.T) {
	var bd Builder
	bd.Set("b", String("1"))
	bd.Set("a", Int64(2))
	bd.Set("b", String("3"))
	bd.Set("c", Bool(true))
	bd.Delete("c")
	bd.Set("d", Value{}) // invalid value deletes (nothing here)
	b := bd.Build()
	if got := b.Names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("names = %v", got)
	}
	if v, _ := b.Get("b"); v.StringValue() != "3" {
		t.Fatalf("b = %v", v)
	}
	if _, ok := b.Get("c"); ok {
		t.Fatal("deleted attribute present")
	}
	if bd.Len() != 0 {
		t.Fatal("Build must leave the builder empty")
	}
	bd.Merge(b)
	bd.Set("a", Int64(5))
	if v, _ := b.Get("a"); v.Int64Value() != 2 {
		t.Fatal("a built bag changed after its builder was reused")
	}
}

func TestNewBuilderFrom(t *testing.T) {
	base := BagOf(map[string]Value{"a": Int64(1), "b": Int64(2)})
	bd := NewBuilderFrom(base, 1)
	bd.Set("b", Int64(3))
	bd.Set("c", Int64(4))
	got := bd.Build()
	if v, _ := base.Get("b"); v.Int64Value() != 2 {
		t.Fatal("the source bag changed")
	}
	if !got.Equal(BagOf(map[string]Value{"a": Int64(1), "b": Int64(3), "c": Int64(4)})) {
		t.Fatalf("got %v", got)
	}
}

func TestStringMapLastWins(t *testing.T) {
	m := NewStringMap([]KV{{"b", "1"}, {"a", "2"}, {"b", "3"}})
	if m.Len() != 2 {
		t.Fatalf("len = %d", m.Len())
	}
	if v, _ := m.Get("b"); v != "3" {
		t.Fatalf("b = %q, want the last value", v)
	}
	if _, ok := m.Get("z"); ok {
		t.Fatal("absent key found")
	}
}

func TestValueAccessorsAndKeys(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	values := []Value{
		String(""), String("a"), String("b"), Int64(0), Int64(1), Double(0), Double(math.NaN()), Bool(false), Bool(true),
		Bytes(nil), Bytes([]byte{1}), Timestamp(now), Timestamp(now.Add(1)), Duration(0), Duration(time.Second),
		StringMapValue(StringMapOf(map[string]string{"a": "b"})), StringMapValue(StringMapOf(map[string]string{"ab": ""})),
		IPAddress(netip.MustParseAddr("10.0.0.1")), IPAddress(netip.MustParseAddr("::1")),
	}
	seen := map[string]int{}
	for i, v := range values {
		if !v.Equal(v) {
			t.Errorf("%v does not equal itself", v)
		}
		key := string(v.AppendKey(nil))
		if j, dup := seen[key]; dup {
			t.Errorf("values %d (%v) and %d (%v) share a key", i, v, j, values[j])
		}
		seen[key] = i
		for j, o := range values {
			if i != j && v.Equal(o) {
				t.Errorf("%v equals %v", v, o)
			}
		}
	}
	if got := Timestamp(now).TimeValue(); !got.Equal(now) {
		t.Errorf("time = %v", got)
	}
	if ip, ok := IPAddress(netip.MustParseAddr("::ffff:10.1.2.3")).IPValue(); !ok || ip.String() != "10.1.2.3" {
		t.Errorf("mapped IPv4 = %v", ip)
	}
	if Double(1.5).DoubleValue() != 1.5 || Int64(7).Int64Value() != 7 || !Bool(true).BoolValue() || Duration(3).DurationValue() != 3 {
		t.Error("accessors")
	}
	if String("x").Int64Value() != 0 {
		t.Error("an accessor of another kind must return the zero value")
	}
}

func TestCompressRoundTrip(t *testing.T) {
	b := requestBag()
	for _, gwc := range []uint32{0, 1, 100, GlobalWordCount()} {
		ca := Compress(b, gwc)
		check := func(i int32) {
			if i >= 0 && uint32(i) >= gwc {
				t.Fatalf("gwc %d: index %d uses a word the peer does not know", gwc, i)
			}
		}
		for k, v := range ca.Strings {
			check(k)
			check(v)
		}
		got, err := Decompress(ca, gwc)
		if err != nil {
			t.Fatalf("gwc %d: %v", gwc, err)
		}
		if !got.Equal(b) {
			t.Fatalf("gwc %d: round trip changed the bag:\n%s\nwant\n%s", gwc, got, b)
		}
	}
	// With the whole dictionary, vocabulary names cost no local words.
	ca := Compress(b, GlobalWordCount())
	if slices.Contains(ca.Words, RequestHeaders) || !slices.Contains(ca.Words, "reviews-v2") {
		t.Errorf("words = %v", ca.Words)
	}
}

// TestIPAddressSharedCells builds IP address values from several
// goroutines, over more addresses than the cache holds, so that cells are
// replaced while values point into them: every value must keep its own
// address (and the race detector must stay quiet).
func TestIPAddressSharedCells(t *testing.T) {
	addrs := make([]netip.Addr, 0, 2*len(ipCells)+3)
	for i := range 2 * len(ipCells) {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 7}))
	}
	addrs = append(addrs, netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:192.0.2.9"), netip.Addr{})
	done := make(chan error, 4)
	for w := range 4 {
		go func() {
			type pair struct {
				addr netip.Addr
				v    Value
			}
			var held []pair
			for round := range 3 {
				for i := range addrs {
					a := addrs[(i*7+w+round)%len(addrs)]
					held = append(held, pair{a.Unmap(), IPAddress(a)})
				}
			}
			for _, p := range held {
				if got, _ := p.v.IPValue(); got != p.addr {
					done <- fmt.Errorf("the value of %v holds %v", p.addr, got)
					return
				}
			}
			done <- nil
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
